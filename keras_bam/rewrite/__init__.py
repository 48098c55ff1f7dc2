"""Finding a model's bottlenecks and inserting BAM there."""

from keras_bam.rewrite.cost import BAMCost, CostReport, cost_report
from keras_bam.rewrite.insert import find_bottlenecks, insert_bam

__all__ = ["BAMCost", "CostReport", "cost_report", "find_bottlenecks", "insert_bam"]
