// ficus pricing corpus: tray_120x80x50_w2.4
$fn = 48;
difference() {
  cube([120, 80, 50]);
  translate([2.4, 2.4, 2.4]) cube([120 - 2 * 2.4, 80 - 2 * 2.4, 50]);
}
