// ficus pricing corpus: closedbox_30x30x30_w2
$fn = 48;
difference() {
  cube([30, 30, 30]);
  translate([2, 2, 2]) cube([30 - 2 * 2, 30 - 2 * 2, 30 - 2 * 2]);
}
