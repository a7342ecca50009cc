// ficus pricing corpus: bracket_80x40x60_t4
$fn = 48;
difference() {
  union() {
    cube([80, 40, 4]);
    cube([4, 40, 60]);
    hull() { translate([4, 0, 4]) cube([0.01, 4, 60 * 0.6]); translate([4, 0, 4]) cube([80 * 0.6, 4, 0.01]); }
  }
  for (x = [80 * 0.45, 80 * 0.8]) translate([x, 40 / 2 + 4 / 2, -1]) cylinder(d = 10.0, h = 4 + 2);
  translate([-1, 40 / 2 + 4 / 2, 60 * 0.7]) rotate([0, 90, 0]) cylinder(d = 10.0, h = 4 + 2);
}
