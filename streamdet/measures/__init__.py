"""What a run measures (`meters`: timers, rates, counters, written as it goes) and the records it reports
them in (`figures`: summaries and status, frozen data); streamdet.reports turns the one into the other."""
