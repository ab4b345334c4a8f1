# Stage 5: the journal (HTML + PDF), every number and finding computed from the matrix.
