"""The report stage: logged runs -> the paper's tables, paired statistics, conclusions and figures."""
