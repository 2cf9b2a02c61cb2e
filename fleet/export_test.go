package fleet

// ParseMetrics is parseMetrics for the external tests.
var ParseMetrics = parseMetrics
