// ficus pricing corpus: bracket_100x25x50_t6
$fn = 48;
difference() {
  union() {
    cube([100, 25, 6]);
    cube([6, 25, 50]);
    hull() { translate([6, 0, 6]) cube([0.01, 6, 50 * 0.6]); translate([6, 0, 6]) cube([100 * 0.6, 6, 0.01]); }
  }
  for (x = [100 * 0.45, 100 * 0.8]) translate([x, 25 / 2 + 6 / 2, -1]) cylinder(d = 6.2, h = 6 + 2);
  translate([-1, 25 / 2 + 6 / 2, 50 * 0.7]) rotate([0, 90, 0]) cylinder(d = 6.2, h = 6 + 2);
}
