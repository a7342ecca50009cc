// ficus pricing corpus: plate_60x30x6_holes3
$fn = 48;
difference() {
  cube([60, 30, 6]);
  for (i = [0 : 3 - 1], j = [0 : 1]) translate([(i + 0.5) * 60 / 3, (j + 0.5) * 30 / 2, -1]) cylinder(d = 10, h = 6 + 2);
}
