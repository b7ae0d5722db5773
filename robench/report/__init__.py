"""Reports: the paper's metrics (:mod:`.metrics`), tables assembled from the store (:mod:`.tables`),
figures (:mod:`.figures`), the paper's claims (:mod:`.paper_claims`) and their rendering (:mod:`.render`)."""
