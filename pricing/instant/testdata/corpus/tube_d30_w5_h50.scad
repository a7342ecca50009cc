// ficus pricing corpus: tube_d30_w5_h50
$fn = 48;
difference() {
  cylinder(d = 30, h = 50);
  translate([0, 0, -1]) cylinder(d = 30 - 2 * 5, h = 50 + 2);
}
