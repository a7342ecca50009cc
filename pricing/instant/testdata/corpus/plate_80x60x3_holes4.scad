// ficus pricing corpus: plate_80x60x3_holes4
$fn = 48;
difference() {
  cube([80, 60, 3]);
  for (i = [0 : 4 - 1], j = [0 : 1]) translate([(i + 0.5) * 80 / 4, (j + 0.5) * 60 / 2, -1]) cylinder(d = 5, h = 3 + 2);
}
