// ficus pricing corpus: plate_100x100x1.6_holes5
$fn = 48;
difference() {
  cube([100, 100, 1.6]);
  for (i = [0 : 5 - 1], j = [0 : 1]) translate([(i + 0.5) * 100 / 5, (j + 0.5) * 100 / 2, -1]) cylinder(d = 3, h = 1.6 + 2);
}
