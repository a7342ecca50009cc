// ficus pricing corpus: box_25x25x25
$fn = 48;
cube([25, 25, 25]);
