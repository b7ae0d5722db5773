"""Reports: the paper's metrics (:mod:`.metrics`), tables assembled from the store (:mod:`.tables`) and their rendering (:mod:`.render`)."""
