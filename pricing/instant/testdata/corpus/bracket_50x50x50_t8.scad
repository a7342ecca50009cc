// ficus pricing corpus: bracket_50x50x50_t8
$fn = 48;
difference() {
  union() {
    cube([50, 50, 8]);
    cube([8, 50, 50]);
    hull() { translate([8, 0, 8]) cube([0.01, 8, 50 * 0.6]); translate([8, 0, 8]) cube([50 * 0.6, 8, 0.01]); }
  }
  for (x = [50 * 0.45, 50 * 0.8]) translate([x, 50 / 2 + 8 / 2, -1]) cylinder(d = 12.5, h = 8 + 2);
  translate([-1, 50 / 2 + 8 / 2, 50 * 0.7]) rotate([0, 90, 0]) cylinder(d = 12.5, h = 8 + 2);
}
