"""Face-record datasets: the record contract, the builder, near-duplicates, splits, the landmark layer, tf.data pipelines."""
