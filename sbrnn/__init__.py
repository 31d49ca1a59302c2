"""sbrnn: sparse block RNNs, tuned in advance.

A child is a recurrent map ``[x_t; h_{t-1}; y_{t-1}] -> [h_t; y_t]`` whose weight space is a
2x3 grid of blocks, each with its own density, init mean and init std. A parent learns, from
records of many children, which configurations train well.
"""

__version__ = "0.1.0"
