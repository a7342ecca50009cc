// ficus pricing corpus: tube_d40_w1.2_h60
$fn = 48;
difference() {
  cylinder(d = 40, h = 60);
  translate([0, 0, -1]) cylinder(d = 40 - 2 * 1.2, h = 60 + 2);
}
