"""Peak calling: the MACS3 routes (:mod:`.macs3`) and the in-process threshold caller (:mod:`.threshold`)."""
