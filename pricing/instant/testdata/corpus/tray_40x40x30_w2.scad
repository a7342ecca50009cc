// ficus pricing corpus: tray_40x40x30_w2
$fn = 48;
difference() {
  cube([40, 40, 30]);
  translate([2, 2, 2]) cube([40 - 2 * 2, 40 - 2 * 2, 30]);
}
