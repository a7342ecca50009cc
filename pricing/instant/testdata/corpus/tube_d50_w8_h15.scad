// ficus pricing corpus: tube_d50_w8_h15
$fn = 48;
difference() {
  cylinder(d = 50, h = 15);
  translate([0, 0, -1]) cylinder(d = 50 - 2 * 8, h = 15 + 2);
}
