// ficus pricing corpus: bracket_30x15x20_t2.5
$fn = 48;
difference() {
  union() {
    cube([30, 15, 2.5]);
    cube([2.5, 15, 20]);
    hull() { translate([2.5, 0, 2.5]) cube([0.01, 2.5, 20 * 0.6]); translate([2.5, 0, 2.5]) cube([30 * 0.6, 2.5, 0.01]); }
  }
  for (x = [30 * 0.45, 30 * 0.8]) translate([x, 15 / 2 + 2.5 / 2, -1]) cylinder(d = 3.8, h = 2.5 + 2);
  translate([-1, 15 / 2 + 2.5 / 2, 20 * 0.7]) rotate([0, 90, 0]) cylinder(d = 3.8, h = 2.5 + 2);
}
