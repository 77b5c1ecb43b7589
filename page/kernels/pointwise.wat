;; Value by value (tensors.js's pointwise): ReLU and its gradient, dropout and its gradient, max
;; pooling's gradient, and the sums of maps (a bias's gradient). One part of the module that
;; python -m tools.make_kernels assembles.

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

;; Dropout's mask and output over n values, from the random numbers a generator (mulberry32, as
;; maths.generator) gives after the state state, four at a time: the ith number's state is
;; state + i * 0x6D2B79F5, and it is kept (mask = scale) where its 32 bits, as a number from 0 to
;; 2^32 - 1, are at least threshold (p * 2^32 rounded up: the number, over 2^32, at least p),
;; else dropped (mask = 0); y = x mask.
(func (export "dropout") (param $y i32) (param $mask i32) (param $x i32) (param $n i32) (param $state i32)
      (param $threshold i32) (param $scale f32)
  (local $i i32) (local $s v128) (local $t v128) (local $m v128) (local $step v128) (local $keep v128)
  (local $lane i32) (local $u i32) (local $k f32)
  (local.set $s (i32x4.add (i32x4.splat (local.get $state))
                           (i32x4.mul (i32x4.splat (i32.const 0x6D2B79F5)) (v128.const i32x4 1 2 3 4))))
  (local.set $step (i32x4.splat (i32.mul (i32.const 0x6D2B79F5) (i32.const 4))))
  (local.set $keep (f32x4.splat (local.get $scale)))
  (block $four_done (loop $four
    (br_if $four_done (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $n)))
    ;; t = imul(s ^ (s >>> 15), 1 | s); t = (t + imul(t ^ (t >>> 7), 61 | t)) ^ t; t ^ (t >>> 14)
    (local.set $t (i32x4.mul (v128.xor (local.get $s) (i32x4.shr_u (local.get $s) (i32.const 15)))
                             (v128.or (local.get $s) (i32x4.splat (i32.const 1)))))
    (local.set $t (v128.xor (i32x4.add (local.get $t)
                                       (i32x4.mul (v128.xor (local.get $t) (i32x4.shr_u (local.get $t) (i32.const 7)))
                                                  (v128.or (local.get $t) (i32x4.splat (i32.const 61)))))
                            (local.get $t)))
    (local.set $t (v128.xor (local.get $t) (i32x4.shr_u (local.get $t) (i32.const 14))))
    (local.set $m (v128.and (local.get $keep) (i32x4.ge_u (local.get $t) (i32x4.splat (local.get $threshold)))))
    (v128.store (local.get $mask) (local.get $m))
    (v128.store (local.get $y) (f32x4.mul (v128.load (local.get $x)) (local.get $m)))
    (local.set $s (i32x4.add (local.get $s) (local.get $step)))
    (local.set $mask (i32.add (local.get $mask) (i32.const 16)))
    (local.set $y (i32.add (local.get $y) (i32.const 16)))
    (local.set $x (i32.add (local.get $x) (i32.const 16)))
    (local.set $i (i32.add (local.get $i) (i32.const 4)))
    (br $four)))
  (block $done (loop $one  ;; the last ones, one at a time (lane 0 of the states)
    (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
    (local.set $u (i32x4.extract_lane 0 (local.get $s)))
    (local.set $u (i32.mul (i32.xor (local.get $u) (i32.shr_u (local.get $u) (i32.const 15)))
                           (i32.or (local.get $u) (i32.const 1))))
    (local.set $u (i32.xor (i32.add (local.get $u)
                                    (i32.mul (i32.xor (local.get $u) (i32.shr_u (local.get $u) (i32.const 7)))
                                             (i32.or (local.get $u) (i32.const 61))))
                           (local.get $u)))
    (local.set $u (i32.xor (local.get $u) (i32.shr_u (local.get $u) (i32.const 14))))
    (local.set $k (select (local.get $scale) (f32.const 0) (i32.ge_u (local.get $u) (local.get $threshold))))
    (f32.store (local.get $mask) (local.get $k))
    (f32.store (local.get $y) (f32.mul (f32.load (local.get $x)) (local.get $k)))
    (local.set $s (i32x4.add (local.get $s) (i32x4.splat (i32.const 0x6D2B79F5))))
    (local.set $mask (i32.add (local.get $mask) (i32.const 4)))
    (local.set $y (i32.add (local.get $y) (i32.const 4)))
    (local.set $x (i32.add (local.get $x) (i32.const 4)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $one)))
)

;; The sums of each of C maps over B images, area values each (image after image, map after map
;; in each), added up in float64 and rounded once: a bias's gradient.
(func (export "map_sums") (param $sums i32) (param $g i32) (param $B i32) (param $C i32) (param $area i32)
  (local $c i32) (local $b i32) (local $at i32) (local $end i32) (local $total f64) (local $pair v128)
  (local $block v128) (local $v v128)
  (block $maps_done (loop $maps
    (br_if $maps_done (i32.ge_u (local.get $c) (local.get $C)))
    (local.set $total (f64.const 0))
    (local.set $b (i32.const 0))
    (block $images_done (loop $images
      (br_if $images_done (i32.ge_u (local.get $b) (local.get $B)))
      (local.set $at (i32.add (local.get $g) (i32.shl (i32.mul (i32.add (i32.mul (local.get $b) (local.get $C)) (local.get $c))
                                                             (local.get $area)) (i32.const 2))))
      (local.set $end (i32.add (local.get $at) (i32.shl (local.get $area) (i32.const 2))))
      (local.set $block (v128.const f64x2 0 0))
      (block $four_done (loop $four  ;; lanes 0 and 2, 1 and 3 in two float64 sums
        (br_if $four_done (i32.gt_u (i32.add (local.get $at) (i32.const 16)) (local.get $end)))
        (local.set $v (v128.load (local.get $at)))
        (local.set $block (f64x2.add (local.get $block) (f64x2.add (f64x2.promote_low_f32x4 (local.get $v))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))))
        (local.set $at (i32.add (local.get $at) (i32.const 16)))
        (br $four)))
      (local.set $total (f64.add (local.get $total)
        (f64.add (f64x2.extract_lane 0 (local.get $block)) (f64x2.extract_lane 1 (local.get $block)))))
      (block $one_done (loop $one
        (br_if $one_done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $total (f64.add (local.get $total) (f64.promote_f32 (f32.load (local.get $at)))))
        (local.set $at (i32.add (local.get $at) (i32.const 4)))
        (br $one)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (br $images)))
    (f32.store (i32.add (local.get $sums) (i32.shl (local.get $c) (i32.const 2))) (f32.demote_f64 (local.get $total)))
    (local.set $c (i32.add (local.get $c) (i32.const 1)))
    (br $maps)))
)
