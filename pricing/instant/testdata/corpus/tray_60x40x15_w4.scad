// ficus pricing corpus: tray_60x40x15_w4
$fn = 48;
difference() {
  cube([60, 40, 15]);
  translate([4, 4, 4]) cube([60 - 2 * 4, 40 - 2 * 4, 15]);
}
