// ficus pricing corpus: tube_d20_w2_h30
$fn = 48;
difference() {
  cylinder(d = 20, h = 30);
  translate([0, 0, -1]) cylinder(d = 20 - 2 * 2, h = 30 + 2);
}
