// ficus pricing corpus: tray_30x20x60_w1.2
$fn = 48;
difference() {
  cube([30, 20, 60]);
  translate([1.2, 1.2, 1.2]) cube([30 - 2 * 1.2, 20 - 2 * 1.2, 60]);
}
