// ficus pricing corpus: closedbox_60x40x30_w3
$fn = 48;
difference() {
  cube([60, 40, 30]);
  translate([3, 3, 3]) cube([60 - 2 * 3, 40 - 2 * 3, 30 - 2 * 3]);
}
