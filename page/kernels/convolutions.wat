;; A convolution's three passes, one image at a time, made of the products (products.wat) and its
;; patches (im2col), kept in a buffer small enough to stay in the processor's cache; and the
;; tutorial's 2 x 2 max pooling. One part of the module that python -m tools.make_kernels assembles.

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

;; The reverse of gather (col2im): x[indices[i]] += columns[i] where the index is not -1, row by
;; row as gather reads them; a row that is a run is added to x's width values four at a time
;; (each value of x gets its sums in the same order either way).
(func $scatter_rows (param $x i32) (param $columns i32) (param $indices i32) (param $runs i32)
      (param $rows i32) (param $width i32)
  (local $row i32) (local $i i32) (local $end i32) (local $at i32) (local $to i32) (local $from i32)
  (block $done (loop $each_row
    (br_if $done (i32.ge_u (local.get $row) (local.get $rows)))
    (local.set $i (i32.mul (local.get $row) (local.get $width)))
    (local.set $end (i32.add (local.get $i) (local.get $width)))
    (local.set $at (i32.load (i32.add (local.get $runs) (i32.shl (local.get $row) (i32.const 2)))))
    (if (i32.ge_s (local.get $at) (i32.const 0))
      (then  ;; a run: width values of x in a row
        (local.set $to (i32.add (local.get $x) (i32.shl (local.get $at) (i32.const 2))))
        (local.set $from (i32.add (local.get $columns) (i32.shl (local.get $i) (i32.const 2))))
        (block $added (loop $four
          (br_if $added (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $end)))
          (v128.store (local.get $to) (f32x4.add (v128.load (local.get $to)) (v128.load (local.get $from))))
          (local.set $from (i32.add (local.get $from) (i32.const 16)))
          (local.set $to (i32.add (local.get $to) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br $four)))))
    ;; the rest of the row (all of it where it is no run), one by one
    (call $scatter (local.get $x) (i32.add (local.get $columns) (i32.shl (local.get $i) (i32.const 2)))
                   (i32.add (local.get $indices) (i32.shl (local.get $i) (i32.const 2)))
                   (i32.sub (local.get $end) (local.get $i)))
    (local.set $row (i32.add (local.get $row) (i32.const 1)))
    (br $each_row)))
)

;; x[indices[i]] += columns[i] for count values, where the index is not -1.
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
      (param $indices i32) (param $runs i32) (param $columns i32) (param $B i32) (param $xImage i32)
      (param $gImage i32) (param $O i32) (param $K i32) (param $P i32) (param $OW i32)
  (local $b i32)
  (block $done (loop $images
    (br_if $done (i32.ge_u (local.get $b) (local.get $B)))
    (call $nn (local.get $columns) (local.get $weightT)
              (i32.add (local.get $g) (i32.shl (i32.mul (local.get $b) (local.get $gImage)) (i32.const 2)))
              (local.get $K) (local.get $O) (local.get $P) (i32.const 0))
    (call $scatter_rows (i32.add (local.get $dx) (i32.shl (i32.mul (local.get $b) (local.get $xImage)) (i32.const 2)))
                        (local.get $columns) (local.get $indices) (local.get $runs)
                        (i32.div_u (i32.mul (local.get $K) (local.get $P)) (local.get $OW)) (local.get $OW))
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
