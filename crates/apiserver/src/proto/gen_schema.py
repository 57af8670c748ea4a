# Regenerates schema.txt from the generated.proto files of k8s.io/api (<group>/<version>/)
# and k8s.io/apimachinery (meta/v1, util/intstr, api/resource, runtime), copied into the
# current directory as <group>_<version>.proto / pkg_<path>.proto. Run: python3 gen_schema.py
import glob, os, re
out = []
for f in sorted(glob.glob('*.proto')):
    src = open(f).read()
    pkg = re.search(r'^package ([\w.]+);', src, re.M).group(1)
    # strip comments
    src = re.sub(r'//[^\n]*', '', src)
    for m in re.finditer(r'\bmessage (\w+) \{(.*?)\n\}', src, re.S):
        name, body = m.group(1), m.group(2)
        out.append(f"M {pkg}.{name}")
        for fm in re.finditer(r'(optional|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+);', body):
            label, ty, fname, num = fm.groups()
            if '.' not in ty and ty not in ('string','bytes','int32','int64','bool','double','float','uint32','uint64','sint32','sint64','fixed32','fixed64'):
                ty = f"{pkg}.{ty}"
            out.append(f"F {num} {fname} {ty} {'r' if label=='repeated' else 'o'}")
        for fm in re.finditer(r'map<string,\s*([\w.]+)>\s+(\w+)\s*=\s*(\d+);', body):
            ty, fname, num = fm.groups()
            if '.' not in ty and ty not in ('string','bytes','int32','int64','bool'):
                ty = f"{pkg}.{ty}"
            out.append(f"F {num} {fname} {ty} m")
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema.txt'), 'w').write('\n'.join(out)+'\n')
print(len(out))
