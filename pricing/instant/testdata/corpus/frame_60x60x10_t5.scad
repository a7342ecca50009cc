// ficus pricing corpus: frame_60x60x10_t5
$fn = 48;
difference() {
  cube([60, 60, 10]);
  translate([5, 5, -1]) cube([60 - 2 * 5, 60 - 2 * 5, 10 + 2]);
}
