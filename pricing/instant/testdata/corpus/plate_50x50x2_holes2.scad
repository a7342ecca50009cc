// ficus pricing corpus: plate_50x50x2_holes2
$fn = 48;
difference() {
  cube([50, 50, 2]);
  for (i = [0 : 2 - 1], j = [0 : 1]) translate([(i + 0.5) * 50 / 2, (j + 0.5) * 50 / 2, -1]) cylinder(d = 4, h = 2 + 2);
}
