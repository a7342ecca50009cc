// ficus pricing corpus: vase_d60_h120_w1
$fn = 48;
difference() {
  cylinder(d1 = 50, d2 = 70, h = 120);
  translate([0, 0, 1.2]) cylinder(d1 = 48, d2 = 68, h = 120);
}
