// ficus pricing corpus: tube_d60_w3_h20
$fn = 48;
difference() {
  cylinder(d = 60, h = 20);
  translate([0, 0, -1]) cylinder(d = 60 - 2 * 3, h = 20 + 2);
}
