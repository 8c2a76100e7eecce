"""`make bench`: speed and memory benchmarks, each printing ratios against a baseline measured in the same run."""
