// ficus pricing corpus: tray_100x100x20_w3
$fn = 48;
difference() {
  cube([100, 100, 20]);
  translate([3, 3, 3]) cube([100 - 2 * 3, 100 - 2 * 3, 20]);
}
