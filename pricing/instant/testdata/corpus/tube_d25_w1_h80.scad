// ficus pricing corpus: tube_d25_w1_h80
$fn = 48;
difference() {
  cylinder(d = 25, h = 80);
  translate([0, 0, -1]) cylinder(d = 25 - 2 * 1, h = 80 + 2);
}
