// ficus pricing corpus: tray_80x60x40_w1.6
$fn = 48;
difference() {
  cube([80, 60, 40]);
  translate([1.6, 1.6, 1.6]) cube([80 - 2 * 1.6, 60 - 2 * 1.6, 40]);
}
