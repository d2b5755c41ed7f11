# Draws bench/results.png from bench/results.dat (written by bench.escript):
# close throughput and the caller's p99 close latency against the number of
# connections closed, one line per method.
set terminal pngcairo size 1200,480 font "sans,10"
set output "results.png"
set multiplot layout 1,2 title "fin_close: closing N connections with unread bytes, one process, loopback"
set key top right
set grid
set logscale x
set xtics (2000, 5000, 10000, 20000)
set xlabel "connections closed (each with 1000 unread bytes)"
set ylabel "closes per second"
plot for [m in "native recv cowboy fin_close"] "results.dat" using 1:(strcol(2) eq m ? $3 : 1/0) with linespoints title m
set ylabel "caller latency p99 (us, log scale)"
set logscale y
plot for [m in "native recv cowboy fin_close"] "results.dat" using 1:(strcol(2) eq m ? $4 : 1/0) with linespoints title m
unset multiplot
