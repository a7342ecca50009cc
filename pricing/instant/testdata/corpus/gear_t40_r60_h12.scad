// ficus pricing corpus: gear_t40_r60_h12
$fn = 48;
difference() {
  linear_extrude(height = 12) union() {
    circle(r = 60 - 3);
    for (i = [0 : 40 - 1]) rotate(360 * i / 40) translate([60 - 3, 0]) square([6, 60 * 3.14 / 40], center = true);
  }
  translate([0, 0, -1]) cylinder(d = 20, h = 12 + 2);
}
