// ficus pricing corpus: frame_100x60x6_t8
$fn = 48;
difference() {
  cube([100, 60, 6]);
  translate([8, 8, -1]) cube([100 - 2 * 8, 60 - 2 * 8, 6 + 2]);
}
