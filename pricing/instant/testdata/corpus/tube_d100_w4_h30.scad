// ficus pricing corpus: tube_d100_w4_h30
$fn = 48;
difference() {
  cylinder(d = 100, h = 30);
  translate([0, 0, -1]) cylinder(d = 100 - 2 * 4, h = 30 + 2);
}
