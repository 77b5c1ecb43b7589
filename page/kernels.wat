;; The two matrix products that convolutions and linear layers are made of (maths.js, matmul), and a
;; convolution's three passes made of them, in WebAssembly with 128-bit SIMD: four float32 lanes a
;; step. Matrices are row-major float32 at byte offsets in this module's memory; maths.js copies
;; them in and out. A convolution works one image at a time, its patches (im2col) kept in a
;; buffer small enough to stay in the processor's cache.
;; Build: python -m tools.make_kernels  (writes page/kernels.wasm, which the export inlines)
(module
  (memory (export "memory") 1)

  ;; C[M x N] = (accumulate ? C : 0) + A[M x K] B[K x N]. Two rows of C at a time, 16 columns at
  ;; a time in eight registers that stay put for the whole sum over k, each value of B loaded once
  ;; for both ($rows2); the columns left over, and a last row, one row at a time ($row).
  (func $nn (export "matmul_nn") (param $c i32) (param $a i32) (param $b i32)
        (param $M i32) (param $K i32) (param $N i32) (param $accumulate i32)
    (local $m i32) (local $n i32) (local $arow i32) (local $crow i32) (local $abytes i32) (local $cbytes i32)
    (local.set $abytes (i32.shl (local.get $K) (i32.const 2)))  ;; bytes in one row of A
    (local.set $cbytes (i32.shl (local.get $N) (i32.const 2)))  ;; in one row of B and C
    (block $pairs_done (loop $pairs
      (br_if $pairs_done (i32.gt_u (i32.add (local.get $m) (i32.const 2)) (local.get $M)))
      (local.set $arow (i32.add (local.get $a) (i32.mul (local.get $m) (local.get $abytes))))
      (local.set $crow (i32.add (local.get $c) (i32.mul (local.get $m) (local.get $cbytes))))
      (local.set $n (call $rows2 (local.get $crow) (local.get $arow) (local.get $b) (local.get $K) (local.get $N)
                                 (local.get $accumulate)))
      (call $row (local.get $crow) (local.get $arow) (local.get $b) (local.get $K) (local.get $N) (local.get $n)
                 (local.get $accumulate))
      (call $row (i32.add (local.get $crow) (local.get $cbytes)) (i32.add (local.get $arow) (local.get $abytes))
                 (local.get $b) (local.get $K) (local.get $N) (local.get $n) (local.get $accumulate))
      (local.set $m (i32.add (local.get $m) (i32.const 2)))
      (br $pairs)))
    (if (i32.lt_u (local.get $m) (local.get $M))
      (then
        (call $row (i32.add (local.get $c) (i32.mul (local.get $m) (local.get $cbytes)))
                   (i32.add (local.get $a) (i32.mul (local.get $m) (local.get $abytes)))
                   (local.get $b) (local.get $K) (local.get $N) (i32.const 0) (local.get $accumulate))))
  )

  ;; Two rows of C (from crow on, N floats each) from two rows of A (from row on, K floats each),
  ;; 16 columns at a time as far as they go; returns where the columns left over start.
  (func $rows2 (param $crow i32) (param $row i32) (param $b i32) (param $K i32) (param $N i32)
        (param $accumulate i32) (result i32)
    (local $n i32) (local $k i32) (local $ap i32) (local $bp i32) (local $cp i32) (local $abytes i32)
    (local $stride i32) (local $s v128) (local $t v128) (local $b0 v128) (local $b1 v128) (local $b2 v128)
    (local $b3 v128) (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128)
    (local $d0 v128) (local $d1 v128) (local $d2 v128) (local $d3 v128)
    (local.set $abytes (i32.shl (local.get $K) (i32.const 2)))
    (local.set $stride (i32.shl (local.get $N) (i32.const 2)))
    (block $wide_done (loop $wide
      (br_if $wide_done (i32.gt_u (i32.add (local.get $n) (i32.const 16)) (local.get $N)))
      (local.set $cp (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))))  ;; C's cells
      (if (local.get $accumulate)
        (then
          (local.set $c0 (v128.load offset=0 (local.get $cp)))
          (local.set $c1 (v128.load offset=16 (local.get $cp)))
          (local.set $c2 (v128.load offset=32 (local.get $cp)))
          (local.set $c3 (v128.load offset=48 (local.get $cp)))
          (local.set $d0 (v128.load offset=0 (i32.add (local.get $cp) (local.get $stride))))
          (local.set $d1 (v128.load offset=16 (i32.add (local.get $cp) (local.get $stride))))
          (local.set $d2 (v128.load offset=32 (i32.add (local.get $cp) (local.get $stride))))
          (local.set $d3 (v128.load offset=48 (i32.add (local.get $cp) (local.get $stride)))))
        (else
          (local.set $c0 (v128.const i32x4 0 0 0 0))
          (local.set $c1 (v128.const i32x4 0 0 0 0))
          (local.set $c2 (v128.const i32x4 0 0 0 0))
          (local.set $c3 (v128.const i32x4 0 0 0 0))
          (local.set $d0 (v128.const i32x4 0 0 0 0))
          (local.set $d1 (v128.const i32x4 0 0 0 0))
          (local.set $d2 (v128.const i32x4 0 0 0 0))
          (local.set $d3 (v128.const i32x4 0 0 0 0))))
      (local.set $ap (local.get $row))
      (local.set $bp (i32.add (local.get $b) (i32.shl (local.get $n) (i32.const 2))))
      (local.set $k (i32.const 0))
      (block $sum_done (loop $sum
        (br_if $sum_done (i32.ge_u (local.get $k) (local.get $K)))
        (local.set $s (f32x4.splat (f32.load (local.get $ap))))
        (local.set $t (f32x4.splat (f32.load (i32.add (local.get $ap) (local.get $abytes)))))
        (local.set $b0 (v128.load offset=0 (local.get $bp)))
        (local.set $b1 (v128.load offset=16 (local.get $bp)))
        (local.set $b2 (v128.load offset=32 (local.get $bp)))
        (local.set $b3 (v128.load offset=48 (local.get $bp)))
        (local.set $c0 (f32x4.add (local.get $c0) (f32x4.mul (local.get $s) (local.get $b0))))
        (local.set $c1 (f32x4.add (local.get $c1) (f32x4.mul (local.get $s) (local.get $b1))))
        (local.set $c2 (f32x4.add (local.get $c2) (f32x4.mul (local.get $s) (local.get $b2))))
        (local.set $c3 (f32x4.add (local.get $c3) (f32x4.mul (local.get $s) (local.get $b3))))
        (local.set $d0 (f32x4.add (local.get $d0) (f32x4.mul (local.get $t) (local.get $b0))))
        (local.set $d1 (f32x4.add (local.get $d1) (f32x4.mul (local.get $t) (local.get $b1))))
        (local.set $d2 (f32x4.add (local.get $d2) (f32x4.mul (local.get $t) (local.get $b2))))
        (local.set $d3 (f32x4.add (local.get $d3) (f32x4.mul (local.get $t) (local.get $b3))))
        (local.set $ap (i32.add (local.get $ap) (i32.const 4)))
        (local.set $bp (i32.add (local.get $bp) (local.get $stride)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $sum)))
      (v128.store offset=0 (local.get $cp) (local.get $c0))
      (v128.store offset=16 (local.get $cp) (local.get $c1))
      (v128.store offset=32 (local.get $cp) (local.get $c2))
      (v128.store offset=48 (local.get $cp) (local.get $c3))
      (local.set $cp (i32.add (local.get $cp) (local.get $stride)))
      (v128.store offset=0 (local.get $cp) (local.get $d0))
      (v128.store offset=16 (local.get $cp) (local.get $d1))
      (v128.store offset=32 (local.get $cp) (local.get $d2))
      (v128.store offset=48 (local.get $cp) (local.get $d3))
      (local.set $n (i32.add (local.get $n) (i32.const 16)))
      (br $wide)))
    (local.get $n)
  )

  ;; One row of C (from crow on) from one row of A (from row on), columns n ... N - 1: 16 at a time
  ;; in four registers that stay put for the whole sum over k, then 4, then 1 at a time.
  (func $row (param $crow i32) (param $row i32) (param $b i32) (param $K i32) (param $N i32) (param $n i32)
        (param $accumulate i32)
    (local $k i32) (local $ap i32) (local $bp i32) (local $stride i32) (local $s v128)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128) (local $scalar f32)
    (local.set $stride (i32.shl (local.get $N) (i32.const 2)))  ;; bytes in one row of B and C
    ;; 16 columns at a time
    (block $wide_done (loop $wide
      (br_if $wide_done (i32.gt_u (i32.add (local.get $n) (i32.const 16)) (local.get $N)))
      (local.set $bp (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))))  ;; C's cells
      (if (local.get $accumulate)
        (then
          (local.set $c0 (v128.load offset=0 (local.get $bp)))
          (local.set $c1 (v128.load offset=16 (local.get $bp)))
          (local.set $c2 (v128.load offset=32 (local.get $bp)))
          (local.set $c3 (v128.load offset=48 (local.get $bp))))
        (else
          (local.set $c0 (v128.const i32x4 0 0 0 0))
          (local.set $c1 (v128.const i32x4 0 0 0 0))
          (local.set $c2 (v128.const i32x4 0 0 0 0))
          (local.set $c3 (v128.const i32x4 0 0 0 0))))
      (local.set $ap (local.get $row))
      (local.set $bp (i32.add (local.get $b) (i32.shl (local.get $n) (i32.const 2))))
      (local.set $k (i32.const 0))
      (block $sum_done (loop $sum
        (br_if $sum_done (i32.ge_u (local.get $k) (local.get $K)))
        (local.set $s (f32x4.splat (f32.load (local.get $ap))))
        (local.set $c0 (f32x4.add (local.get $c0) (f32x4.mul (local.get $s) (v128.load offset=0 (local.get $bp)))))
        (local.set $c1 (f32x4.add (local.get $c1) (f32x4.mul (local.get $s) (v128.load offset=16 (local.get $bp)))))
        (local.set $c2 (f32x4.add (local.get $c2) (f32x4.mul (local.get $s) (v128.load offset=32 (local.get $bp)))))
        (local.set $c3 (f32x4.add (local.get $c3) (f32x4.mul (local.get $s) (v128.load offset=48 (local.get $bp)))))
        (local.set $ap (i32.add (local.get $ap) (i32.const 4)))
        (local.set $bp (i32.add (local.get $bp) (local.get $stride)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $sum)))
      (local.set $bp (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))))
      (v128.store offset=0 (local.get $bp) (local.get $c0))
      (v128.store offset=16 (local.get $bp) (local.get $c1))
      (v128.store offset=32 (local.get $bp) (local.get $c2))
      (v128.store offset=48 (local.get $bp) (local.get $c3))
      (local.set $n (i32.add (local.get $n) (i32.const 16)))
      (br $wide)))
    ;; 4 columns at a time
    (block $narrow_done (loop $narrow
      (br_if $narrow_done (i32.gt_u (i32.add (local.get $n) (i32.const 4)) (local.get $N)))
      (local.set $bp (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))))
      (local.set $c0 (v128.const i32x4 0 0 0 0))
      (if (local.get $accumulate) (then (local.set $c0 (v128.load (local.get $bp)))))
      (local.set $ap (local.get $row))
      (local.set $bp (i32.add (local.get $b) (i32.shl (local.get $n) (i32.const 2))))
      (local.set $k (i32.const 0))
      (block $sum4_done (loop $sum4
        (br_if $sum4_done (i32.ge_u (local.get $k) (local.get $K)))
        (local.set $c0 (f32x4.add (local.get $c0)
          (f32x4.mul (f32x4.splat (f32.load (local.get $ap))) (v128.load (local.get $bp)))))
        (local.set $ap (i32.add (local.get $ap) (i32.const 4)))
        (local.set $bp (i32.add (local.get $bp) (local.get $stride)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $sum4)))
      (v128.store (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))) (local.get $c0))
      (local.set $n (i32.add (local.get $n) (i32.const 4)))
      (br $narrow)))
    ;; the last columns one at a time
    (block $single_done (loop $single
      (br_if $single_done (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $bp (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))))
      (local.set $scalar (f32.const 0))
      (if (local.get $accumulate) (then (local.set $scalar (f32.load (local.get $bp)))))
      (local.set $ap (local.get $row))
      (local.set $bp (i32.add (local.get $b) (i32.shl (local.get $n) (i32.const 2))))
      (local.set $k (i32.const 0))
      (block $sum1_done (loop $sum1
        (br_if $sum1_done (i32.ge_u (local.get $k) (local.get $K)))
        (local.set $scalar (f32.add (local.get $scalar)
          (f32.mul (f32.load (local.get $ap)) (f32.load (local.get $bp)))))
        (local.set $ap (i32.add (local.get $ap) (i32.const 4)))
        (local.set $bp (i32.add (local.get $bp) (local.get $stride)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $sum1)))
      (f32.store (i32.add (local.get $crow) (i32.shl (local.get $n) (i32.const 2))) (local.get $scalar))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $single)))
  )

  ;; C[M x N] = (accumulate ? C : 0) + A[M x K] B[N x K]^T: each cell the dot product of a row of A
  ;; and a row of B. Two rows of A against four of B at a time: eight sums of four lanes, each
  ;; value of A and B loaded once for four and two of them; each row's four sums then become one
  ;; vector of C's four cells (the lanes added pairwise). The cells left over one at a time ($dot).
  (func $nt (export "matmul_nt") (param $c i32) (param $a i32) (param $b i32)
        (param $M i32) (param $K i32) (param $N i32) (param $accumulate i32)
    (local $m i32) (local $n i32) (local $rowbytes i32) (local $a0 i32) (local $a1 i32) (local $bp i32)
    (local $cp i32) (local $sums v128)
    (local.set $rowbytes (i32.shl (local.get $K) (i32.const 2)))
    (block $pairs_done (loop $pairs  ;; rows m and m + 1
      (br_if $pairs_done (i32.gt_u (i32.add (local.get $m) (i32.const 2)) (local.get $M)))
      (local.set $a0 (i32.add (local.get $a) (i32.mul (local.get $m) (local.get $rowbytes))))
      (local.set $a1 (i32.add (local.get $a0) (local.get $rowbytes)))
      (local.set $n (i32.const 0))
      (block $fours_done (loop $fours  ;; against rows n ... n + 3 of B
        (br_if $fours_done (i32.gt_u (i32.add (local.get $n) (i32.const 4)) (local.get $N)))
        (local.set $bp (i32.add (local.get $b) (i32.mul (local.get $n) (local.get $rowbytes))))
        (local.set $cp (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $m) (local.get $N)) (local.get $n)) (i32.const 2))))
        (call $dots2x4 (local.get $cp) (i32.add (local.get $cp) (i32.shl (local.get $N) (i32.const 2)))
                       (local.get $a0) (local.get $a1) (local.get $bp) (local.get $K) (local.get $accumulate))
        (local.set $n (i32.add (local.get $n) (i32.const 4)))
        (br $fours)))
      (block $rest_done (loop $rest
        (br_if $rest_done (i32.ge_u (local.get $n) (local.get $N)))
        (local.set $bp (i32.add (local.get $b) (i32.mul (local.get $n) (local.get $rowbytes))))
        (local.set $cp (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $m) (local.get $N)) (local.get $n)) (i32.const 2))))
        (call $cell (local.get $cp) (local.get $a0) (local.get $bp) (local.get $K) (local.get $accumulate))
        (call $cell (i32.add (local.get $cp) (i32.shl (local.get $N) (i32.const 2)))
                    (local.get $a1) (local.get $bp) (local.get $K) (local.get $accumulate))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rest)))
      (local.set $m (i32.add (local.get $m) (i32.const 2)))
      (br $pairs)))
    (block $last_done (loop $last  ;; a last row, one cell at a time
      (br_if $last_done (i32.ge_u (local.get $m) (local.get $M)))
      (local.set $n (i32.const 0))
      (block $cells_done (loop $cells
        (br_if $cells_done (i32.ge_u (local.get $n) (local.get $N)))
        (call $cell (i32.add (local.get $c) (i32.shl (i32.add (i32.mul (local.get $m) (local.get $N)) (local.get $n)) (i32.const 2)))
                    (i32.add (local.get $a) (i32.mul (local.get $m) (local.get $rowbytes)))
                    (i32.add (local.get $b) (i32.mul (local.get $n) (local.get $rowbytes)))
                    (local.get $K) (local.get $accumulate))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $cells)))
      (local.set $m (i32.add (local.get $m) (i32.const 1)))
      (br $last)))
  )

  ;; The four lanes of each of four sums, added into one vector: lane i the sum of x_i's lanes.
  (func $across (param $x0 v128) (param $x1 v128) (param $x2 v128) (param $x3 v128) (result v128)
    (local $low v128) (local $high v128)
    ;; x0's and x1's lanes 0 + 2 and 1 + 3, interleaved; the same of x2 and x3
    (local.set $low (f32x4.add (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $x0) (local.get $x1))
                               (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $x0) (local.get $x1))))
    (local.set $high (f32x4.add (i8x16.shuffle 0 1 2 3 16 17 18 19 4 5 6 7 20 21 22 23 (local.get $x2) (local.get $x3))
                                (i8x16.shuffle 8 9 10 11 24 25 26 27 12 13 14 15 28 29 30 31 (local.get $x2) (local.get $x3))))
    (f32x4.add (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $low) (local.get $high))
               (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $low) (local.get $high)))
  )

  ;; Two rows of C's four cells from c0 and c1 on: the dot products of A's rows at a0 and a1 with
  ;; B's four rows from b on (K floats each, one after another), added to the cells if accumulate.
  (func $dots2x4 (param $c0 i32) (param $c1 i32) (param $a0 i32) (param $a1 i32) (param $b i32)
        (param $K i32) (param $accumulate i32)
    (local $k i32) (local $at i32) (local $rowbytes i32) (local $x0 v128) (local $x1 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local $s00 v128) (local $s01 v128) (local $s02 v128) (local $s03 v128)
    (local $s10 v128) (local $s11 v128) (local $s12 v128) (local $s13 v128) (local $row0 v128) (local $row1 v128)
    (local.set $rowbytes (i32.shl (local.get $K) (i32.const 2)))
    (block $four_done (loop $four  ;; four values of each row a step; $at: their byte offset in a row
      (br_if $four_done (i32.gt_u (i32.add (local.get $k) (i32.const 4)) (local.get $K)))
      (local.set $at (i32.shl (local.get $k) (i32.const 2)))
      (local.set $x0 (v128.load (i32.add (local.get $a0) (local.get $at))))
      (local.set $x1 (v128.load (i32.add (local.get $a1) (local.get $at))))
      (local.set $at (i32.add (local.get $b) (local.get $at)))
      (local.set $b0 (v128.load (local.get $at)))
      (local.set $b1 (v128.load (i32.add (local.get $at) (local.get $rowbytes))))
      (local.set $b2 (v128.load (i32.add (local.get $at) (i32.shl (local.get $rowbytes) (i32.const 1)))))
      (local.set $b3 (v128.load (i32.add (local.get $at) (i32.mul (local.get $rowbytes) (i32.const 3)))))
      (local.set $s00 (f32x4.add (local.get $s00) (f32x4.mul (local.get $x0) (local.get $b0))))
      (local.set $s01 (f32x4.add (local.get $s01) (f32x4.mul (local.get $x0) (local.get $b1))))
      (local.set $s02 (f32x4.add (local.get $s02) (f32x4.mul (local.get $x0) (local.get $b2))))
      (local.set $s03 (f32x4.add (local.get $s03) (f32x4.mul (local.get $x0) (local.get $b3))))
      (local.set $s10 (f32x4.add (local.get $s10) (f32x4.mul (local.get $x1) (local.get $b0))))
      (local.set $s11 (f32x4.add (local.get $s11) (f32x4.mul (local.get $x1) (local.get $b1))))
      (local.set $s12 (f32x4.add (local.get $s12) (f32x4.mul (local.get $x1) (local.get $b2))))
      (local.set $s13 (f32x4.add (local.get $s13) (f32x4.mul (local.get $x1) (local.get $b3))))
      (local.set $k (i32.add (local.get $k) (i32.const 4)))
      (br $four)))
    (local.set $row0 (call $across (local.get $s00) (local.get $s01) (local.get $s02) (local.get $s03)))
    (local.set $row1 (call $across (local.get $s10) (local.get $s11) (local.get $s12) (local.get $s13)))
    (block $tail_done (loop $tail  ;; the last values, one a step: B's four rows' value in one vector
      (br_if $tail_done (i32.ge_u (local.get $k) (local.get $K)))
      (local.set $at (i32.add (local.get $b) (i32.shl (local.get $k) (i32.const 2))))
      (local.set $b0 (f32x4.replace_lane 3 (f32x4.replace_lane 2 (f32x4.replace_lane 1
        (f32x4.splat (f32.load (local.get $at)))
        (f32.load (i32.add (local.get $at) (local.get $rowbytes))))
        (f32.load (i32.add (local.get $at) (i32.shl (local.get $rowbytes) (i32.const 1)))))
        (f32.load (i32.add (local.get $at) (i32.mul (local.get $rowbytes) (i32.const 3))))))
      (local.set $at (i32.shl (local.get $k) (i32.const 2)))
      (local.set $row0 (f32x4.add (local.get $row0)
        (f32x4.mul (f32x4.splat (f32.load (i32.add (local.get $a0) (local.get $at)))) (local.get $b0))))
      (local.set $row1 (f32x4.add (local.get $row1)
        (f32x4.mul (f32x4.splat (f32.load (i32.add (local.get $a1) (local.get $at)))) (local.get $b0))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $tail)))
    (if (local.get $accumulate)
      (then
        (local.set $row0 (f32x4.add (local.get $row0) (v128.load (local.get $c0))))
        (local.set $row1 (f32x4.add (local.get $row1) (v128.load (local.get $c1))))))
    (v128.store (local.get $c0) (local.get $row0))
    (v128.store (local.get $c1) (local.get $row1))
  )

  ;; One cell of C at c: the dot product of A's row at a and B's row at b (K floats each), 8 then 4
  ;; products a step in two registers, their lanes added at the end; added to the cell if accumulate.
  (func $cell (param $c i32) (param $a i32) (param $b i32) (param $K i32) (param $accumulate i32)
    (local $k i32) (local $s0 v128) (local $s1 v128) (local $sum f32)
    (block $eight_done (loop $eight
      (br_if $eight_done (i32.gt_u (i32.add (local.get $k) (i32.const 8)) (local.get $K)))
      (local.set $s0 (f32x4.add (local.get $s0)
        (f32x4.mul (v128.load offset=0 (local.get $a)) (v128.load offset=0 (local.get $b)))))
      (local.set $s1 (f32x4.add (local.get $s1)
        (f32x4.mul (v128.load offset=16 (local.get $a)) (v128.load offset=16 (local.get $b)))))
      (local.set $a (i32.add (local.get $a) (i32.const 32)))
      (local.set $b (i32.add (local.get $b) (i32.const 32)))
      (local.set $k (i32.add (local.get $k) (i32.const 8)))
      (br $eight)))
    (if (i32.le_u (i32.add (local.get $k) (i32.const 4)) (local.get $K))
      (then
        (local.set $s0 (f32x4.add (local.get $s0)
          (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b)))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))))
    (local.set $s0 (f32x4.add (local.get $s0) (local.get $s1)))
    (local.set $sum (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $s0)) (f32x4.extract_lane 1 (local.get $s0)))
      (f32.add (f32x4.extract_lane 2 (local.get $s0)) (f32x4.extract_lane 3 (local.get $s0)))))
    (block $tail_done (loop $tail
      (br_if $tail_done (i32.ge_u (local.get $k) (local.get $K)))
      (local.set $sum (f32.add (local.get $sum) (f32.mul (f32.load (local.get $a)) (f32.load (local.get $b)))))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (local.set $b (i32.add (local.get $b) (i32.const 4)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $tail)))
    (if (local.get $accumulate) (then (local.set $sum (f32.add (local.get $sum) (f32.load (local.get $c))))))
    (f32.store (local.get $c) (local.get $sum))
  )

  ;; im2col of one image: columns[i] = x[indices[i]], or 0 where the index is -1 (padding). The
  ;; patches' matrix is rows of width values (a kernel entry's values along one output row); where
  ;; runs[row] is not -1 the row is x's width values from runs[row] on, copied four at a time.
  (func $gather (param $columns i32) (param $x i32) (param $indices i32) (param $runs i32)
        (param $rows i32) (param $width i32)
    (local $row i32) (local $i i32) (local $end i32) (local $at i32) (local $from i32) (local $to i32)
    (local $value f32)
    (block $done (loop $each_row
      (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
      (local.set $i (i32.mul (local.get $row) (local.get $width)))
      (local.set $end (i32.add (local.get $i) (local.get $width)))
      (local.set $at (i32.load (i32.add (local.get $runs) (i32.shl (local.get $row) (i32.const 2)))))
      (if (i32.ge_s (local.get $at) (i32.const 0))
        (then  ;; a run: width values of x in a row
          (local.set $from (i32.add (local.get $x) (i32.shl (local.get $at) (i32.const 2))))
          (local.set $to (i32.add (local.get $columns) (i32.shl (local.get $i) (i32.const 2))))
          (block $copied (loop $four
            (br_if $copied (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $end)))
            (v128.store (local.get $to) (v128.load (local.get $from)))
            (local.set $from (i32.add (local.get $from) (i32.const 16)))
            (local.set $to (i32.add (local.get $to) (i32.const 16)))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $four)))))
      (block $row_done (loop $each  ;; the rest of the row (all of it where it is no run), one by one
        (br_if $row_done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $at (i32.load (i32.add (local.get $indices) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $value (f32.const 0))
        (if (i32.ge_s (local.get $at) (i32.const 0))
          (then (local.set $value (f32.load (i32.add (local.get $x) (i32.shl (local.get $at) (i32.const 2)))))))
        (f32.store (i32.add (local.get $columns) (i32.shl (local.get $i) (i32.const 2))) (local.get $value))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $each_row)))
  )

  ;; The reverse (col2im): x[indices[i]] += columns[i] where the index is not -1.
  (func $scatter (param $x i32) (param $columns i32) (param $indices i32) (param $count i32)
    (local $i i32) (local $at i32)
    (block $done (loop $each
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (local.set $at (i32.load (i32.add (local.get $indices) (i32.shl (local.get $i) (i32.const 2)))))
      (if (i32.ge_s (local.get $at) (i32.const 0))
        (then
          (local.set $at (i32.add (local.get $x) (i32.shl (local.get $at) (i32.const 2))))
          (f32.store (local.get $at) (f32.add (f32.load (local.get $at))
            (f32.load (i32.add (local.get $columns) (i32.shl (local.get $i) (i32.const 2))))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
  )

  ;; Convolution, forward, B images: y_b[O x P] = bias + weight[O x K] columns_b[K x P], where
  ;; columns_b is image b's patches (indices: K x P, as maths.js's patchIndices; runs: each row of
  ;; OW indices' first, where they follow one another, else -1; see gather). Images of x are
  ;; xImage floats apart, those of y yImage apart (a group's maps are some of an image's).
  (func (export "conv_forward") (param $y i32) (param $x i32) (param $weight i32) (param $bias i32)
        (param $indices i32) (param $runs i32) (param $columns i32) (param $B i32) (param $xImage i32)
        (param $yImage i32) (param $O i32) (param $K i32) (param $P i32) (param $OW i32)
    (local $b i32) (local $o i32) (local $p i32) (local $out i32) (local $value f32)
    (block $done (loop $images
      (br_if $done (i32.ge_u (local.get $b) (local.get $B)))
      (call $gather (local.get $columns)
        (i32.add (local.get $x) (i32.shl (i32.mul (local.get $b) (local.get $xImage)) (i32.const 2)))
        (local.get $indices) (local.get $runs) (i32.div_u (i32.mul (local.get $K) (local.get $P)) (local.get $OW))
        (local.get $OW))
      (local.set $out (i32.add (local.get $y) (i32.shl (i32.mul (local.get $b) (local.get $yImage)) (i32.const 2))))
      (local.set $o (i32.const 0))
      (block $filled (loop $maps  ;; each map starts at its bias; the product is added to it
        (br_if $filled (i32.ge_u (local.get $o) (local.get $O)))
        (local.set $value (f32.load (i32.add (local.get $bias) (i32.shl (local.get $o) (i32.const 2)))))
        (local.set $p (i32.const 0))
        (block $row_done (loop $row
          (br_if $row_done (i32.ge_u (local.get $p) (local.get $P)))
          (f32.store (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $o) (local.get $P)) (local.get $p)) (i32.const 2)))
                     (local.get $value))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $row)))
        (local.set $o (i32.add (local.get $o) (i32.const 1)))
        (br $maps)))
      (call $nn (local.get $out) (local.get $weight) (local.get $columns)
                (local.get $O) (local.get $K) (local.get $P) (i32.const 1))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $images)))
  )

  ;; Convolution, the weights' gradient: weightGradient[O x K] += g_b[O x P] columns_b[K x P]^T
  ;; over the images (it starts as the caller left it).
  (func (export "conv_weight_gradient") (param $weightGradient i32) (param $g i32) (param $x i32)
        (param $indices i32) (param $runs i32) (param $columns i32) (param $B i32) (param $xImage i32)
        (param $gImage i32) (param $O i32) (param $K i32) (param $P i32) (param $OW i32)
    (local $b i32)
    (block $done (loop $images
      (br_if $done (i32.ge_u (local.get $b) (local.get $B)))
      (call $gather (local.get $columns)
        (i32.add (local.get $x) (i32.shl (i32.mul (local.get $b) (local.get $xImage)) (i32.const 2)))
        (local.get $indices) (local.get $runs) (i32.div_u (i32.mul (local.get $K) (local.get $P)) (local.get $OW))
        (local.get $OW))
      (call $nt (local.get $weightGradient)
                (i32.add (local.get $g) (i32.shl (i32.mul (local.get $b) (local.get $gImage)) (i32.const 2)))
                (local.get $columns) (local.get $O) (local.get $P) (local.get $K) (i32.const 1))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $images)))
  )

  ;; Convolution, the input's gradient: each image's patches' gradients, weightT[K x O] g_b[O x P],
  ;; added back where each patch came from (into dx, which starts as the caller left it).
  (func (export "conv_input_gradient") (param $dx i32) (param $g i32) (param $weightT i32)
        (param $indices i32) (param $columns i32) (param $B i32) (param $xImage i32)
        (param $gImage i32) (param $O i32) (param $K i32) (param $P i32)
    (local $b i32)
    (block $done (loop $images
      (br_if $done (i32.ge_u (local.get $b) (local.get $B)))
      (call $nn (local.get $columns) (local.get $weightT)
                (i32.add (local.get $g) (i32.shl (i32.mul (local.get $b) (local.get $gImage)) (i32.const 2)))
                (local.get $K) (local.get $O) (local.get $P) (i32.const 0))
      (call $scatter (i32.add (local.get $dx) (i32.shl (i32.mul (local.get $b) (local.get $xImage)) (i32.const 2)))
                     (local.get $columns) (local.get $indices) (i32.mul (local.get $K) (local.get $P)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $images)))
  )

  ;; Max pooling of 2 x 2 windows, stride 2, no padding (the tutorial's), four outputs a step: for
  ;; each of the maps (H x W floats each, back to back), y's OH x OW largest values and kept's
  ;; index (in x, counted in floats) of each, the first largest as PyTorch takes it (or a NaN).
  (func (export "max_pool_2x2") (param $y i32) (param $kept i32) (param $x i32) (param $maps i32)
        (param $H i32) (param $W i32) (param $OH i32) (param $OW i32)
    (local $map i32) (local $oy i32) (local $ox i32) (local $first i32) (local $out i32)
    (local $row0a v128) (local $row0b v128) (local $row1a v128) (local $row1b v128)
    (local $best v128) (local $where v128) (local $value v128) (local $better v128)
    (local $at i32) (local $k i32) (local $scalar f32) (local $index i32) (local $v f32)
    (block $maps_done (loop $each_map
      (br_if $maps_done (i32.ge_u (local.get $map) (local.get $maps)))
      (local.set $oy (i32.const 0))
      (block $rows_done (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $oy) (local.get $OH)))
        ;; the window's first value, counted in floats from x: row 2 oy of this map
        (local.set $first (i32.mul (i32.add (i32.mul (local.get $map) (local.get $H)) (i32.shl (local.get $oy) (i32.const 1))) (local.get $W)))
        (local.set $out (i32.mul (i32.add (i32.mul (local.get $map) (local.get $OH)) (local.get $oy)) (local.get $OW)))
        (local.set $ox (i32.const 0))
        (block $wide_done (loop $wide
          (br_if $wide_done (i32.gt_u (i32.add (local.get $ox) (i32.const 4)) (local.get $OW)))
          (local.set $at (i32.add (local.get $x) (i32.shl (i32.add (local.get $first) (i32.shl (local.get $ox) (i32.const 1))) (i32.const 2))))
          (local.set $row0a (v128.load offset=0 (local.get $at)))
          (local.set $row0b (v128.load offset=16 (local.get $at)))
          (local.set $at (i32.add (local.get $at) (i32.shl (local.get $W) (i32.const 2))))
          (local.set $row1a (v128.load offset=0 (local.get $at)))
          (local.set $row1b (v128.load offset=16 (local.get $at)))
          ;; the top left values of four windows, then top right, bottom left, bottom right
          (local.set $best (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $row0a) (local.get $row0b)))
          (local.set $where (i32x4.add (i32x4.splat (i32.add (local.get $first) (i32.shl (local.get $ox) (i32.const 1))))
                                       (v128.const i32x4 0 2 4 6)))
          (local.set $value (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $row0a) (local.get $row0b)))
          (local.set $better (v128.or (f32x4.gt (local.get $value) (local.get $best)) (f32x4.ne (local.get $value) (local.get $value))))
          (local.set $best (v128.bitselect (local.get $value) (local.get $best) (local.get $better)))
          (local.set $where (v128.bitselect (i32x4.add (local.get $where) (i32x4.splat (i32.const 1))) (local.get $where) (local.get $better)))
          ;; (where + 1 where it moved to the top right; W and W + 1 below are from the top left's)
          (local.set $value (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $row1a) (local.get $row1b)))
          (local.set $better (v128.or (f32x4.gt (local.get $value) (local.get $best)) (f32x4.ne (local.get $value) (local.get $value))))
          (local.set $best (v128.bitselect (local.get $value) (local.get $best) (local.get $better)))
          (local.set $where (v128.bitselect
            (i32x4.add (i32x4.splat (i32.add (i32.add (local.get $first) (i32.shl (local.get $ox) (i32.const 1))) (local.get $W)))
                       (v128.const i32x4 0 2 4 6))
            (local.get $where) (local.get $better)))
          (local.set $value (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $row1a) (local.get $row1b)))
          (local.set $better (v128.or (f32x4.gt (local.get $value) (local.get $best)) (f32x4.ne (local.get $value) (local.get $value))))
          (local.set $best (v128.bitselect (local.get $value) (local.get $best) (local.get $better)))
          (local.set $where (v128.bitselect
            (i32x4.add (i32x4.splat (i32.add (i32.add (local.get $first) (i32.shl (local.get $ox) (i32.const 1))) (i32.add (local.get $W) (i32.const 1))))
                       (v128.const i32x4 0 2 4 6))
            (local.get $where) (local.get $better)))
          (v128.store (i32.add (local.get $y) (i32.shl (i32.add (local.get $out) (local.get $ox)) (i32.const 2))) (local.get $best))
          (v128.store (i32.add (local.get $kept) (i32.shl (i32.add (local.get $out) (local.get $ox)) (i32.const 2))) (local.get $where))
          (local.set $ox (i32.add (local.get $ox) (i32.const 4)))
          (br $wide)))
        ;; the last windows of the row one at a time, in the same order: top left, top right, bottom left, bottom right
        (block $single_done (loop $single
          (br_if $single_done (i32.ge_u (local.get $ox) (local.get $OW)))
          (local.set $index (i32.add (local.get $first) (i32.shl (local.get $ox) (i32.const 1))))
          (local.set $scalar (f32.load (i32.add (local.get $x) (i32.shl (local.get $index) (i32.const 2)))))
          (local.set $at (local.get $index))
          (local.set $k (i32.const 1))
          (block $window_done (loop $window
            (br_if $window_done (i32.ge_u (local.get $k) (i32.const 4)))
            (local.set $index (i32.add (i32.add (local.get $first) (i32.shl (local.get $ox) (i32.const 1)))
                                       (i32.add (i32.and (local.get $k) (i32.const 1))
                                                (i32.mul (i32.shr_u (local.get $k) (i32.const 1)) (local.get $W)))))
            (local.set $v (f32.load (i32.add (local.get $x) (i32.shl (local.get $index) (i32.const 2)))))
            (if (i32.or (f32.gt (local.get $v) (local.get $scalar)) (f32.ne (local.get $v) (local.get $v)))
              (then (local.set $scalar (local.get $v)) (local.set $at (local.get $index))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $window)))
          (f32.store (i32.add (local.get $y) (i32.shl (i32.add (local.get $out) (local.get $ox)) (i32.const 2))) (local.get $scalar))
          (i32.store (i32.add (local.get $kept) (i32.shl (i32.add (local.get $out) (local.get $ox)) (i32.const 2))) (local.get $at))
          (local.set $ox (i32.add (local.get $ox) (i32.const 1)))
          (br $single)))
        (local.set $oy (i32.add (local.get $oy) (i32.const 1)))
        (br $rows)))
      (local.set $map (i32.add (local.get $map) (i32.const 1)))
      (br $each_map)))
  )

  ;; ReLU over n values: y = max(x, 0), four at a time (a NaN stays a NaN, as PyTorch's).
  (func (export "relu") (param $y i32) (param $x i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (block $four_done (loop $four
      (br_if $four_done (i32.gt_u (i32.add (local.get $x) (i32.const 16)) (local.get $end)))
      (v128.store (local.get $y) (f32x4.max (v128.load (local.get $x)) (v128.const f32x4 0 0 0 0)))
      (local.set $x (i32.add (local.get $x) (i32.const 16)))
      (local.set $y (i32.add (local.get $y) (i32.const 16)))
      (br $four)))
    (block $done (loop $one
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (f32.store (local.get $y) (f32.max (f32.load (local.get $x)) (f32.const 0)))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $y (i32.add (local.get $y) (i32.const 4)))
      (br $one)))
  )

  ;; ReLU's gradient over n values: dx = g where x > 0, else 0.
  (func (export "relu_gradient") (param $dx i32) (param $g i32) (param $x i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (block $four_done (loop $four
      (br_if $four_done (i32.gt_u (i32.add (local.get $x) (i32.const 16)) (local.get $end)))
      (v128.store (local.get $dx) (v128.and (v128.load (local.get $g))
                                            (f32x4.gt (v128.load (local.get $x)) (v128.const f32x4 0 0 0 0))))
      (local.set $x (i32.add (local.get $x) (i32.const 16)))
      (local.set $g (i32.add (local.get $g) (i32.const 16)))
      (local.set $dx (i32.add (local.get $dx) (i32.const 16)))
      (br $four)))
    (block $done (loop $one
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (f32.store (local.get $dx) (select (f32.load (local.get $g)) (f32.const 0)
                                         (f32.gt (f32.load (local.get $x)) (f32.const 0))))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $g (i32.add (local.get $g) (i32.const 4)))
      (local.set $dx (i32.add (local.get $dx) (i32.const 4)))
      (br $one)))
  )

  ;; out = a b, value by value, over n values (dropout's gradient: g times the mask).
  (func (export "times") (param $out i32) (param $a i32) (param $b i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $a) (i32.shl (local.get $n) (i32.const 2))))
    (block $four_done (loop $four
      (br_if $four_done (i32.gt_u (i32.add (local.get $a) (i32.const 16)) (local.get $end)))
      (v128.store (local.get $out) (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b))))
      (local.set $a (i32.add (local.get $a) (i32.const 16)))
      (local.set $b (i32.add (local.get $b) (i32.const 16)))
      (local.set $out (i32.add (local.get $out) (i32.const 16)))
      (br $four)))
    (block $done (loop $one
      (br_if $done (i32.ge_u (local.get $a) (local.get $end)))
      (f32.store (local.get $out) (f32.mul (f32.load (local.get $a)) (f32.load (local.get $b))))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (local.set $b (i32.add (local.get $b) (i32.const 4)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br $one)))
  )

  ;; Max pooling's gradient: dx[kept[i]] += g[i] for each of n outputs whose kept index (counted in
  ;; floats from dx) is not -1 (a window of padding only).
  (func (export "max_pool_gradient") (param $dx i32) (param $kept i32) (param $g i32) (param $n i32)
    (call $scatter (local.get $dx) (local.get $g) (local.get $kept) (local.get $n))
  )
)
