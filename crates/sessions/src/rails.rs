//! Safety rails: the operations no kill path may kill.
