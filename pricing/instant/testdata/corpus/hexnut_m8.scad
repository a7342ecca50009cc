// ficus pricing corpus: hexnut_m8
$fn = 48;
difference() {
  cylinder(d = 14.8, h = 6.5, $fn = 6);
  translate([0, 0, -1]) cylinder(d = 8, h = 8.5);
}
