// ficus pricing corpus: bracket_40x20x30_t3
$fn = 48;
difference() {
  union() {
    cube([40, 20, 3]);
    cube([3, 20, 30]);
    hull() { translate([3, 0, 3]) cube([0.01, 3, 30 * 0.6]); translate([3, 0, 3]) cube([40 * 0.6, 3, 0.01]); }
  }
  for (x = [40 * 0.45, 40 * 0.8]) translate([x, 20 / 2 + 3 / 2, -1]) cylinder(d = 5.0, h = 3 + 2);
  translate([-1, 20 / 2 + 3 / 2, 30 * 0.7]) rotate([0, 90, 0]) cylinder(d = 5.0, h = 3 + 2);
}
