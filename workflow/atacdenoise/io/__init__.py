"""Files in and out: genome sizes, intervals (BED/narrowPeak), BAM access, fragments files, bigWig read/write."""
