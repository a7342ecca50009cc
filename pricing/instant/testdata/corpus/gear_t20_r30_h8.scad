// ficus pricing corpus: gear_t20_r30_h8
$fn = 48;
difference() {
  linear_extrude(height = 8) union() {
    circle(r = 30 - 3);
    for (i = [0 : 20 - 1]) rotate(360 * i / 20) translate([30 - 3, 0]) square([6, 30 * 3.14 / 20], center = true);
  }
  translate([0, 0, -1]) cylinder(d = 8, h = 8 + 2);
}
