// ficus pricing corpus: plate_150x100x5_holes8
$fn = 48;
difference() {
  cube([150, 100, 5]);
  for (i = [0 : 8 - 1], j = [0 : 1]) translate([(i + 0.5) * 150 / 8, (j + 0.5) * 100 / 2, -1]) cylinder(d = 6, h = 5 + 2);
}
