-- Every TPC-H nation with its region's name (from the emulator's tpch catalog).
select
    n.nationkey,
    n.name as nation,
    r.name as region
from tpch.tiny.nation n
join tpch.tiny.region r on n.regionkey = r.regionkey
