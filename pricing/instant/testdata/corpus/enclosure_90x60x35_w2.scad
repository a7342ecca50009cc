// ficus pricing corpus: enclosure_90x60x35_w2
$fn = 48;
difference() {
  minkowski() { cube([86, 56, 34]); cylinder(r = 2, h = 1); }
  translate([2, 2, 2]) minkowski() { cube([82, 52, 40]); cylinder(r = 2, h = 1); }
  translate([-5, 20, 15]) cube([10, 20, 10]);
}
