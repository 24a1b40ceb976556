import hashlib, struct
def u32(v): return struct.pack('>I', v)
def u64(v): return struct.pack('>Q', v)
def b(x): return u32(len(x))+x
def fileh(kind, mode, size, xattrs=()):
    out=b'SLATEF1\0'+kind+u32(mode)+u32(0)+u32(0)+u64(0)+u32(len(xattrs))
    for k,v in xattrs: out+=b(k)+b(v)
    return out+u64(size)
f=hashlib.sha256(fileh(b'f',0o644,6,[(b'user.test',b'1')])+b'hello\n').digest()
l=hashlib.sha256(fileh(b'l',0o777,11)+b'hello/../hi').digest()
t=b'SLATET1\0'+u32(0o755)+u32(0)+u32(0)+u32(0)+u32(2)+b'f'+b(b'hello')+f+b'f'+b(b'link')+l
tid=hashlib.sha256(t).digest()
c=b'SLATEC1\0'+b'\0'+tid+u64(1700000000)+b(b'golden')+b(b'')+u32(1)+b(b'version')+b(b'1')
for n,x in [('FILE',f),('SYMLINK',l),('TREE',tid),('COMMIT',hashlib.sha256(c).digest())]: print(n,x.hex())
# the CLI golden tree
def fid(kind, mode, content): return hashlib.sha256(fileh(kind, mode, len(content))+content).digest()
def tree(entries, mode=0o755):
    out=b'SLATET1\0'+u32(mode)+u32(0)+u32(0)+u32(0)+u32(len(entries))
    for name,kind,i in sorted(entries): out+=kind+b(name)+i
    return hashlib.sha256(out).digest()
etc=tree([(b'hostname',b'f',fid(b'f',0o644,b'slate\n')),(b'localtime',b'f',fid(b'l',0o777,b'/usr/share/zoneinfo/UTC'))])
t=fid(b'f',0o644,b'\x7fELF')
usrbin=tree([(b'true',b'f',t),(b'also-true',b'f',t)])
usr=tree([(b'bin',b'd',usrbin)])
root=tree([(b'etc',b'd',etc),(b'usr',b'd',usr)])
c=b'SLATEC1\0'+b'\0'+root+u64(1700000000)+b(b'golden')+b(b'')+u32(0)
print('GOLDEN_COMMIT_ID', hashlib.sha256(c).hexdigest())
