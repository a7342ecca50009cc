// ficus pricing corpus: tube_d80_w2_h40
$fn = 48;
difference() {
  cylinder(d = 80, h = 40);
  translate([0, 0, -1]) cylinder(d = 80 - 2 * 2, h = 40 + 2);
}
