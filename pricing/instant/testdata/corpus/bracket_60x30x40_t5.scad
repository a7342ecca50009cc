// ficus pricing corpus: bracket_60x30x40_t5
$fn = 48;
difference() {
  union() {
    cube([60, 30, 5]);
    cube([5, 30, 40]);
    hull() { translate([5, 0, 5]) cube([0.01, 5, 40 * 0.6]); translate([5, 0, 5]) cube([60 * 0.6, 5, 0.01]); }
  }
  for (x = [60 * 0.45, 60 * 0.8]) translate([x, 30 / 2 + 5 / 2, -1]) cylinder(d = 7.5, h = 5 + 2);
  translate([-1, 30 / 2 + 5 / 2, 40 * 0.7]) rotate([0, 90, 0]) cylinder(d = 7.5, h = 5 + 2);
}
