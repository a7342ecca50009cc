// ficus pricing corpus: plate_120x90x4_holes6
$fn = 48;
difference() {
  cube([120, 90, 4]);
  for (i = [0 : 6 - 1], j = [0 : 1]) translate([(i + 0.5) * 120 / 6, (j + 0.5) * 90 / 2, -1]) cylinder(d = 8, h = 4 + 2);
}
