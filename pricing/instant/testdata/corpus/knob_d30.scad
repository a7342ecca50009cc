// ficus pricing corpus: knob_d30
$fn = 48;
union() {
  cylinder(d = 30, h = 12);
  translate([0, 0, 12]) cylinder(d1 = 30, d2 = 20, h = 6);
  translate([0, 0, 18]) cylinder(d = 12, h = 15);
}
