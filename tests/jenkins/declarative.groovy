// The offline stand-in for a Jenkins controller that mlci's tests use (issue 12, "Proof").
//
// No Jenkins controller, plugin or agent is installable here, so this script loads a Jenkinsfile
// the way Jenkins does (Groovy 2.4, the language level of Jenkins' CPS interpreter), turns the
// Declarative DSL into a tree with a recording delegate, checks the rules Jenkins' Declarative
// validator enforces, and can then run the pipeline on this host: sh steps run for real, each
// stage agent gets its own empty workspace, stash/unstash/junit/archiveArtifacts/copyArtifacts
// work on real files, input is answered and withCredentials binds dummy secrets.
//
//   groovy declarative.groovy validate [--library NAME=DIR]... FILE...
//       one JSON object per FILE on stdout: {"file", "ok", "syntax_error", "errors", "stages", "tree"}
//   groovy declarative.groovy execute JENKINSFILE --workspace-root DIR --source DIR --store DIR
//       [--env K=V]... [--cause BranchEventCause|UserIdCause[:user]|TimerTrigger|...]
//       [--credentials FILE.json] [--answer approve|abort] [--approver USER] [--library NAME=DIR]...
//       [--param NAME=VALUE]... (a build's parameters, as Build with Parameters gives them)
//       the build's JSON on stdout and in STORE/builds/N/result.json, its log in STORE/builds/N/log.txt
//
// Exit codes: 0 the files are valid / the build ran to completion (whatever its result: the JSON
// says), 1 Declarative rule errors, 2 a Groovy syntax error, 3 a usage error or a crash of the stub.
//
// Models: exactly one pipeline, the known sections/options/post conditions/when conditions/input
// fields/credential bindings, an allow-list of steps (Rules.STEPS), sh scripts never GStrings,
// node-needing steps only under an agent; when (ant-glob branch, changeRequest, triggeredBy against
// --cause, allOf/anyOf/not/expression/environment/tag/equals with before* flags), environment
// blocks evaluated at stage entry, stages in order with later ones SKIPPED after a failure or an
// abort, parallel branches one after the other (failFast honoured), post conditions in Jenkins'
// order, timeout killing a step (ABORTED), retry, the implicit checkout unless skipDefaultCheckout,
// Jenkins' environment (WORKSPACE, WORKSPACE_TMP, BUILD_*, JOB_*, JENKINS_URL, NODE_NAME,
// STAGE_NAME, plus --env), secrets masked as **** in the log and a build failed when Groovy puts
// one into an sh script. Does not model: a controller, plugins' own argument checks beyond the
// above, containers (every agent is this host), matrix, real concurrency, the credential store.
//
// Groovy 2.4 syntax only (Debian's groovy): no lambdas, no `var`, no `!in`.

import groovy.io.FileType
import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.util.concurrent.TimeUnit
import java.util.regex.Pattern
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.MultipleCompilationErrorsException
import org.codehaus.groovy.control.messages.SyntaxErrorMessage

// `@Library('mlci') _` must compile: Jenkins provides this annotation, so does the stub.
@interface Library {
    String[] value()
}

class Rules {
    static final List TOP_SECTIONS = ['agent', 'environment', 'libraries', 'options', 'parameters', 'post',
                                      'stages', 'tools', 'triggers']
    static final List STAGE_SECTIONS = ['agent', 'environment', 'failFast', 'input', 'options', 'parallel',
                                        'post', 'stages', 'steps', 'matrix', 'tools', 'when']
    static final List STAGE_BODIES = ['steps', 'stages', 'parallel', 'matrix']
    // Jenkins runs post conditions in this order, whatever the order in the file.
    static final List POST_CONDITIONS = ['always', 'changed', 'fixed', 'regression', 'aborted', 'failure',
                                         'success', 'unstable', 'unsuccessful', 'cleanup']
    static final List WHEN_CONDITIONS = ['allOf', 'anyOf', 'branch', 'buildingTag', 'changeRequest',
                                         'environment', 'equals', 'expression', 'not', 'tag', 'triggeredBy']
    static final List WHEN_FLAGS = ['beforeAgent', 'beforeInput', 'beforeOptions']
    static final List INPUT_FIELDS = ['message', 'ok', 'submitter', 'submitterParameter', 'id', 'parameters']
    static final List PIPELINE_OPTIONS = ['buildDiscarder', 'checkoutToSubdirectory', 'disableConcurrentBuilds',
                                          'disableResume', 'durabilityHint', 'newContainerPerStage',
                                          'overrideIndexTriggers', 'parallelsAlwaysFailFast', 'preserveStashes',
                                          'quietPeriod', 'retry', 'skipDefaultCheckout', 'skipStagesAfterUnstable',
                                          'timeout', 'timestamps', 'copyArtifactPermission']
    // Jenkins accepts only these in a stage's options (the rest are pipeline-wide).
    static final List STAGE_OPTIONS = ['retry', 'skipDefaultCheckout', 'timeout', 'timestamps']
    static final List TRIGGERS = ['cron', 'pollSCM', 'upstream']
    static final List PARAMETER_TYPES = ['booleanParam', 'choice', 'password', 'string', 'text']
    static final List AGENT_KINDS = ['docker', 'dockerfile', 'kubernetes', 'label', 'node']
    // withCredentials binding -> its required arguments (Credentials Binding plugin).
    static final Map BINDINGS = [
        string               : ['credentialsId', 'variable'],
        usernamePassword     : ['credentialsId', 'usernameVariable', 'passwordVariable'],
        file                 : ['credentialsId', 'variable'],
        sshUserPrivateKey    : ['credentialsId', 'keyFileVariable'],
        usernameColonPassword: ['credentialsId', 'variable'],
    ]
    // The steps mlci emits (and the stub implements). Library global vars are added per file.
    static final List STEPS = ['archiveArtifacts', 'checkout', 'copyArtifacts', 'deleteDir', 'dir', 'echo', 'error',
                               'fileExists', 'input', 'junit', 'readProperties', 'script', 'sh', 'stash', 'timeout', 'unstash',
                               'withCredentials', 'withEnv']
    // Steps that need a workspace (a node): illegal where no agent holds one.
    static final List NODE_STEPS = ['archiveArtifacts', 'checkout', 'copyArtifacts', 'deleteDir', 'dir', 'fileExists', 'junit',
                                    'readProperties', 'sh', 'stash', 'unstash']
    // Functions that are only valid as another call's argument.
    static final List HELPERS = ['credentials', 'lastCompleted', 'lastSuccessful', 'legacySCM', 'logRotator', 'specific'] +
        (BINDINGS.keySet() as List)
    // Ant's default excludes (stash, archiveArtifacts and junit apply them, as Jenkins does).
    static final List DEFAULT_EXCLUDES = ['**/*~', '**/#*#', '**/.#*', '**/%*%', '**/._*', '**/CVS', '**/CVS/**',
                                          '**/.cvsignore', '**/SCCS', '**/SCCS/**', '**/vssver.scc', '**/.svn',
                                          '**/.svn/**', '**/.git', '**/.git/**', '**/.gitattributes',
                                          '**/.gitignore', '**/.gitmodules', '**/.hg', '**/.hg/**', '**/.hgignore',
                                          '**/.hgsub', '**/.hgsubstate', '**/.hgtags', '**/.bzr', '**/.bzr/**',
                                          '**/.bzrignore', '**/.DS_Store']
    // --cause short names -> the Jenkins cause classes that triggeredBy matches against.
    static final Map CAUSES = [
        BranchEventCause   : 'jenkins.branch.BranchEventCause',
        BranchIndexingCause: 'jenkins.branch.BranchIndexingCause',
        SCMTrigger         : 'hudson.triggers.SCMTrigger$SCMTriggerCause',
        TimerTrigger       : 'hudson.triggers.TimerTrigger$TimerTriggerCause',
        UpstreamCause      : 'hudson.model.Cause$UpstreamCause',
        UserIdCause        : 'hudson.model.Cause$UserIdCause',
    ]
    static final List RESULTS = ['SUCCESS', 'UNSTABLE', 'FAILURE', 'NOT_BUILT', 'ABORTED']

    static String worse(String a, String b) {
        return RESULTS.indexOf(a) >= RESULTS.indexOf(b) ? a : b
    }
}

// A bare name the DSL uses as a value: `agent any`, `unit: MINUTES`, `checkout scm`, and (when
// validating) `env.BRANCH_NAME`.
class Sym {
    String name

    Sym(String name) { this.name = name }

    def propertyMissing(String p) { return new Sym(name + '.' + p) }

    def propertyMissing(String p, Object v) {}

    def methodMissing(String m, Object a) { return new Sym(name + '.' + m + '()') }

    boolean asBoolean() { return true }

    String toString() { return name }
}

// One recorded call: name, positional and named arguments, the trailing closure, where it is.
class Node {
    String name
    String kind = 'call'        // 'var': a call of a shared library's global variable
    List args = []
    Map named = [:]
    Closure body
    String file
    int line
    List<Node> children = []
    Map props = [:]             // NAME = value assignments in the block (environment)
    Map propLines = [:]
    List<String> sink           // where a misuse found while recording is reported

    static Node make(String name, Object[] argv, List where) {
        Node n = new Node(name: name, file: where[0], line: where[1])
        List a = new ArrayList(argv as List)
        if (a && a[a.size() - 1] instanceof Closure) {
            n.body = (Closure) a.remove(a.size() - 1)
        }
        if (a && a[0] instanceof Map) {
            n.named = new LinkedHashMap((Map) a.remove(0))
        }
        n.args = a
        return n
    }

    Object arg0() { return args ? args[0] : null }

    Object value(String key) { return named.containsKey(key) ? named[key] : arg0() }

    Node kid(String n) { return children.find { it.name == n } }

    List<Node> kids(String n) { return children.findAll { it.name == n } }

    String loc() { return file + ':' + line }

    // A step's result used as a value while recording (`sh(returnStdout: true).trim()`). A block
    // there is a command chain (`always { } failure { }` on one line): Jenkins rejects it.
    def methodMissing(String m, Object a) {
        if (sink != null && (a as List).any { it instanceof Closure }) {
            sink << "${loc()}: ${m} { ... } is chained onto ${name}(...) on one line: put each on its own line".toString()
        }
        return new Sym(name + '().' + m + '()')
    }

    def propertyMissing(String p) { return new Sym(name + '().' + p) }

    String toString() { return name + '(...)' }
}

class StepFailure extends RuntimeException {
    String result
    String where

    StepFailure(String message, String result, String where) {
        super(message)
        this.result = result
        this.where = where
    }
}

// The Jenkinsfile script's delegate while executing: a closure that misses a name on its own
// delegate falls back to its owner, the script, whose lookups must fail as in Jenkins.
class Strict {
    def propertyMissing(String n) {
        throw new MissingPropertyException("No such property: ${n} for class: groovy.lang.Binding".toString())
    }

    def methodMissing(String n, Object a) {
        throw new MissingMethodException(n, Strict, a as Object[])
    }
}

class UsageError extends RuntimeException {
    UsageError(String message) { super(message) }
}

// env.X: reads and writes go to the closures the owner supplies.
class EnvView {
    Closure reader
    Closure writer

    def propertyMissing(String n) { return reader.call(n) }

    def propertyMissing(String n, Object v) { writer.call(n, v) }

    def getAt(String n) { return reader.call(n) }

    void putAt(String n, Object v) { writer.call(n, v) }
}

class Util {
    static Object plain(Object v) {
        if (v == null || v instanceof Boolean || v instanceof Number) return v
        if (v instanceof CharSequence || v instanceof Sym) return v.toString()
        if (v instanceof Node) {
            Node n = (Node) v
            Map m = [fn: n.name]
            if (n.args) m.args = plain(n.args)
            if (n.named) m.named = plain(n.named)
            return m
        }
        if (v instanceof Map) {
            Map out = [:]
            ((Map) v).each { k, x -> out[k.toString()] = plain(x) }
            return out
        }
        if (v instanceof Collection || v instanceof Object[]) return (v as List).collect { plain(it) }
        if (v instanceof Closure) return '{...}'
        return v.toString()
    }

    static Map tree(Node n) {
        Map m = [name: n.name, line: n.line, file: n.file]
        if (n.kind != 'call') m.kind = n.kind
        if (n.args) m.args = plain(n.args)
        if (n.named) m.named = plain(n.named)
        if (n.props) m.props = plain(n.props)
        if (n.children) m.children = n.children.collect { tree(it) }
        return m
    }

    // Ant-style path matching: `*` and `?` stay in one segment, `**` spans any number of them.
    static boolean antMatch(String pattern, String path, boolean caseSensitive) {
        String p = pattern.replace('\\', '/')
        if (p.endsWith('/')) p += '**'
        List segs = p.split('/') as List
        StringBuilder sb = new StringBuilder()
        segs.eachWithIndex { String s, int i ->
            boolean last = i == segs.size() - 1
            if (s == '**') {
                sb.append(last ? '.*' : '(?:[^/]*/)*')
            } else {
                s.each { String ch ->
                    sb.append(ch == '*' ? '[^/]*' : (ch == '?' ? '[^/]' : Pattern.quote(ch)))
                }
                if (!last) sb.append('/')
            }
        }
        int flags = caseSensitive ? 0 : Pattern.CASE_INSENSITIVE
        return Pattern.compile(sb.toString(), flags).matcher(path.replace('\\', '/')).matches()
    }

    static List<String> patterns(Object spec) {
        if (spec == null) return []
        return spec.toString().split(',').collect { it.trim() }.findAll { it }
    }

    // Files (relative paths) under base matching the includes and none of the excludes.
    static List<String> scan(File base, Object includes, Object excludes, boolean defaultExcludes) {
        List<String> inc = patterns(includes ?: '**')
        List<String> exc = patterns(excludes)
        if (defaultExcludes) exc = exc + Rules.DEFAULT_EXCLUDES
        List<String> out = []
        if (!base.isDirectory()) return out
        base.eachFileRecurse(FileType.FILES) { File f ->
            String rel = base.toPath().relativize(f.toPath()).toString().replace('\\', '/')
            if (inc.any { antMatch(it, rel, true) } && !exc.any { antMatch(it, rel, true) }) out << rel
        }
        return out.sort()
    }

    static void copyFiles(File from, List<String> rels, File to) {
        rels.each { String rel ->
            File target = new File(to, rel)
            target.parentFile.mkdirs()
            Files.copy(new File(from, rel).toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.COPY_ATTRIBUTES)
        }
    }

    static String slug(String s) {
        return s.replaceAll('[^A-Za-z0-9._-]+', '-')
    }

    static long millis(Object time, Object unit) {
        String u = (unit ?: 'MINUTES').toString()
        return TimeUnit.valueOf(u).toMillis(time as long)
    }
}

// Everything one Jenkinsfile (and the libraries it loads) share.
class Ctx {
    String mode                          // 'validate' or 'execute'
    Map<String, String> displayNames = [:]   // class file name -> what errors call it
    String mainDisplay
    Map<String, File> libraryDirs = [:]
    Set<String> loaded = [] as Set
    Map<String, Class> vars = [:]
    List<Script> scripts = []
    Map topVars = [:]
    List<String> loadErrors = []
    List<String> syntaxErrors = []
    GroovyShell shell
    Build build

    Ctx(String mode, Map<String, File> libraryDirs) {
        this.mode = mode
        this.libraryDirs = libraryDirs
        CompilerConfiguration cc = new CompilerConfiguration()
        cc.scriptBaseClass = DelegatingScript.class.name
        shell = new GroovyShell(this.class.classLoader, new Binding(), cc)
    }

    static String syntaxMessage(String display, MultipleCompilationErrorsException e) {
        def first = e.errorCollector.errors ? e.errorCollector.errors[0] : null
        if (first instanceof SyntaxErrorMessage) {
            def se = ((SyntaxErrorMessage) first).cause
            return display + ':' + se.line + ': ' + se.originalMessage
        }
        return display + ': ' + e.message.readLines().findAll { it.trim() }.drop(1).join(' ')
    }

    DelegatingScript compileMain(File f) {
        mainDisplay = f.name
        displayNames['Jenkinsfile'] = f.name
        String text = f.getText('UTF-8')
        try {
            // An explicit class name: a file name such as `bad-agent.Jenkinsfile` is no class name.
            DelegatingScript s = (DelegatingScript) shell.parse(text, 'Jenkinsfile')
            scripts << s
            annotatedLibraries(text).each { loadLibrary(it, [mainDisplay, 1]) }
            return s
        } catch (MultipleCompilationErrorsException e) {
            syntaxErrors << syntaxMessage(f.name, e)
            return null
        }
    }

    static List<String> annotatedLibraries(String text) {
        List<String> names = []
        def m = text =~ /@Library\s*\(\s*(\[[^\]]*\]|'[^']*'|"[^"]*")/
        m.each { all, spec ->
            (spec =~ /['"]([^'"]+)['"]/).each { x, name -> names << name }
        }
        return names
    }

    void loadLibrary(String spec, List where) {
        String name = spec.split('@')[0]
        if (loaded.contains(name)) return
        File dir = libraryDirs[name]
        if (dir == null) {
            loadErrors << "${where[0]}:${where[1]}: library '${name}' is not available to the stub (pass --library ${name}=DIR)".toString()
            return
        }
        loaded << name
        File varsDir = new File(dir, 'vars')
        List<File> files = varsDir.isDirectory() ? varsDir.listFiles().findAll { it.name.endsWith('.groovy') }.sort { it.name } : []
        files.each { File vf ->
            String var = vf.name[0..-8]
            String display = 'vars/' + vf.name
            displayNames[vf.name] = display
            try {
                vars[var] = shell.parseClass(new GroovyCodeSource(vf.getText('UTF-8'), vf.name, '/groovy/shell'))
            } catch (MultipleCompilationErrorsException e) {
                syntaxErrors << syntaxMessage(display, e)
            }
        }
    }

    boolean isVar(String name) { return vars.containsKey(name) }

    // A global var call runs the var's `call` with the caller's delegate, as Jenkins does.
    Object callVar(String name, Object[] args, Object delegate) {
        DelegatingScript s = (DelegatingScript) vars[name].newInstance()
        s.setDelegate(delegate)
        scripts << s
        return s.getMetaClass().invokeMethod(s, 'call', args)
    }

    // A method the Jenkinsfile (or a var file) defines itself: closures delegate first, so the
    // delegate sees the call and hands it back to the script that declares it.
    Closure scriptMethod(String name, Object[] args) {
        if (name in ['call', 'run', 'main'] || name.startsWith('$') || name.startsWith('super$')) return null
        for (Script s : scripts.reverse()) {
            if (s.getClass().declaredMethods.any { it.name == name && it.parameterTypes.length == args.length }) {
                return { s.getMetaClass().invokeMethod(s, name, args) }
            }
        }
        return null
    }

    // The Jenkinsfile or library line of the DSL call being made.
    List where() {
        for (StackTraceElement e : new Throwable().stackTrace) {
            if (e.lineNumber > 0 && displayNames.containsKey(e.fileName)) return [displayNames[e.fileName], e.lineNumber]
        }
        return [mainDisplay, 0]
    }

    String locate(Throwable t) {
        StackTraceElement e = t.stackTrace.find { it.lineNumber > 0 && displayNames.containsKey(it.fileName) }
        return e == null ? mainDisplay : displayNames[e.fileName] + ':' + e.lineNumber
    }

    static Object runWith(Closure body, Object delegate) {
        Closure c = (Closure) body.clone()
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c.delegate = delegate
        return c.call()
    }
}

// The recording delegate: every DSL call becomes a Node; trailing closures nest.
class Recorder {
    Ctx ctx
    Node root = new Node(name: 'root')
    List<Node> stack = []
    Closure envRead              // execute: the live environment; validate: null (symbols)
    Object paramsValue
    Object buildValue
    // Recorded: closures recorded here run again later, and a name they miss falls back through
    // their owners to this delegate, which must then fail as Jenkins would, not answer a symbol.
    boolean done

    Recorder(Ctx ctx, Closure envRead, Object paramsValue, Object buildValue) {
        this.ctx = ctx
        this.envRead = envRead
        this.paramsValue = paramsValue
        this.buildValue = buildValue
        stack << root
    }

    Node cur() { return stack[stack.size() - 1] }

    def getEnv() {
        Closure r = envRead ?: { String n -> new Sym('env.' + n) }
        return new EnvView(reader: r, writer: { String n, Object v -> })
    }

    def getParams() { return paramsValue ?: new Sym('params') }

    def getCurrentBuild() { return buildValue ?: new Sym('currentBuild') }

    def getScm() { return new Sym('scm') }

    def propertyMissing(String n) {
        if (ctx.topVars.containsKey(n)) return ctx.topVars[n]
        if (done) throw new MissingPropertyException("No such property: ${n} for class: groovy.lang.Binding".toString())
        if (envRead != null) {
            Object v = envRead.call(n)
            if (v != null) return v
        }
        return new Sym(n)
    }

    def propertyMissing(String n, Object v) {
        if (stack.size() == 1) {
            ctx.topVars[n] = v
            return
        }
        detach(v)
        cur().props[n] = v
        cur().propLines[n] = ctx.where()[1]
    }

    // `equals expected: x, actual: y` in when: Object.equals would swallow it.
    def equals(Map named) { return methodMissing('equals', [named] as Object[]) }

    void println(Object o) {}

    void println() {}

    void print(Object o) {}

    def methodMissing(String name, Object a) {
        Object[] args = a as Object[]
        Closure own = ctx.scriptMethod(name, args)
        if (own != null) return own.call()
        if (done) throw new MissingMethodException(name, Recorder, args)
        Node n = Node.make(name, args, ctx.where())
        n.sink = ctx.loadErrors
        args.each { detach(it) }
        cur().children << n
        if (ctx.isVar(name)) {
            n.kind = 'var'
            stack << n
            try {
                return ctx.callVar(name, args, this)
            } finally {
                stack.remove(stack.size() - 1)
            }
        }
        if (name == 'library' && stack.size() == 1) {
            Object id = n.value('identifier')
            if (id != null) ctx.loadLibrary(id.toString(), [n.file, n.line])
        }
        if (name == 'lib' && cur() != root) {
            if (n.arg0() != null) ctx.loadLibrary(n.arg0().toString(), [n.file, n.line])
        }
        // Jenkins' Declarative parser never runs a script block before its stage does: a build
        // records it unrun, so its assignments to the script's variables happen only then.
        if (n.body != null && !(name == 'script' && ctx.mode == 'execute')) {
            stack << n
            try {
                Ctx.runWith(n.body, this)
            } finally {
                stack.remove(stack.size() - 1)
            }
        }
        return n
    }

    // A call evaluated as another call's argument (`string(...)` in withCredentials([...]),
    // `logRotator(...)` in buildDiscarder) ran first and was recorded as a sibling: take it back.
    void detach(Object v) {
        if (v instanceof Node) {
            cur().children.remove(v)
        } else if (v instanceof Map) {
            ((Map) v).values().each { detach(it) }
        } else if (v instanceof Collection || v instanceof Object[]) {
            (v as List).each { detach(it) }
        }
    }
}

// Jenkins' Declarative rules on the recorded tree.
class Validator {
    Ctx ctx
    List<String> errors = []
    Set<String> stageNames = [] as Set
    List<Map> stages = []

    Validator(Ctx ctx) { this.ctx = ctx }

    void err(Node n, String msg) { errors << (n.loc() + ': ' + msg) }

    static String list(Collection c) { return c.join(', ') }

    // Library var calls are transparent where steps (or the top level) are expected.
    static List<Node> flat(List<Node> nodes) {
        List<Node> out = []
        nodes.each { Node n -> if (n.kind == 'var') out.addAll(flat(n.children)) else out << n }
        return out
    }

    void dupes(Node parent, List<Node> kids, String what) {
        Set seen = [] as Set
        kids.each { Node k ->
            if (!seen.add(k.name)) err(k, "Multiple occurrences of the ${k.name} section in ${what}")
        }
    }

    void run(Node root) {
        List<Node> top = flat(root.children)
        top.each { Node n ->
            // Script statements may precede the pipeline: loading a library, or stopping the build.
            if (!(n.name in ['pipeline', 'library', 'error'])) {
                err(n, "${n.name} at the top level: a Declarative Jenkinsfile holds one pipeline {} block (and library(...) or error(...) steps)")
            }
        }
        List<Node> pipes = top.findAll { it.name == 'pipeline' }
        if (!pipes) errors << ctx.mainDisplay + ': no pipeline {} block (a Declarative Jenkinsfile holds exactly one)'
        pipes.drop(1).each { err(it, 'more than one pipeline {} block (a Declarative Jenkinsfile holds exactly one)') }
        if (pipes) pipeline(pipes[0])
        checkArgs(root)
    }

    void pipeline(Node p) {
        if (p.body == null) {
            err(p, 'pipeline needs a { ... } block')
            return
        }
        p.props.keySet().each { errors << "${p.file}:${p.propLines[it]}: assignment ${it} = ... directly in pipeline {}: put it in environment {}".toString() }
        p.children.each { Node s ->
            if (!(s.name in Rules.TOP_SECTIONS)) err(s, "unknown pipeline section '${s.name}' (allowed: ${list(Rules.TOP_SECTIONS)})")
        }
        dupes(p, p.children.findAll { it.name in Rules.TOP_SECTIONS }, 'pipeline')
        Node agent = p.kid('agent')
        boolean hasNode = false
        if (agent == null) {
            err(p, "pipeline has no agent (add agent any, agent none or agent { label '...' })")
        } else {
            hasNode = checkAgent(agent)
        }
        Node st = p.kid('stages')
        if (st == null) err(p, 'pipeline has no stages {} section')
        else checkStages(st, hasNode, '')
        Node opt = p.kid('options')
        if (opt) checkOptions(opt, Rules.PIPELINE_OPTIONS, 'pipeline')
        Node env = p.kid('environment')
        if (env) checkEnvironment(env)
        Node trig = p.kid('triggers')
        if (trig) trig.children.each { Node t ->
            if (!(t.name in Rules.TRIGGERS)) err(t, "unknown trigger '${t.name}' (allowed: ${list(Rules.TRIGGERS)})")
            else if (t.name in ['cron', 'pollSCM'] && !(t.value('spec') instanceof CharSequence)) err(t, "${t.name} needs a schedule string")
        }
        Node par = p.kid('parameters')
        if (par) par.children.each { Node x ->
            if (!(x.name in Rules.PARAMETER_TYPES)) err(x, "unknown parameter type '${x.name}' (allowed: ${list(Rules.PARAMETER_TYPES)})")
            else if (x.named.name == null) err(x, "parameter ${x.name} needs a name:")
        }
        Node libs = p.kid('libraries')
        if (libs) libs.children.each { Node l -> if (l.name != 'lib') err(l, "libraries {} only holds lib('name@version'), not ${l.name}") }
        Node post = p.kid('post')
        if (post) checkPost(post, hasNode, 'pipeline post')
    }

    // Returns whether the agent holds a node (anything but `agent none`).
    boolean checkAgent(Node a) {
        Object v = a.arg0()
        if (a.body != null) {
            List<Node> kinds = a.children
            if (kinds.size() != 1 || !(kinds[0].name in Rules.AGENT_KINDS)) {
                err(a, "agent { } must hold exactly one of ${list(Rules.AGENT_KINDS)}")
            }
            return true
        }
        if (a.named.containsKey('label')) return true
        if (v instanceof Sym && v.toString() in ['any', 'none']) return v.toString() == 'any'
        err(a, "agent must be any, none, or { label '...' } (got ${Util.plain(a.args ?: a.named)})")
        return true
    }

    static boolean isNone(Node a) {
        return a != null && a.body == null && a.arg0() instanceof Sym && a.arg0().toString() == 'none'
    }

    void checkStages(Node s, boolean hasNode, String prefix) {
        if (s.body == null || s.children.isEmpty()) {
            err(s, 'stages {} must hold at least one stage')
            return
        }
        s.children.each { Node c ->
            if (c.kind == 'var') err(c, "${c.name}(...) in stages {}: Declarative only accepts stage('name') { ... } there")
            else if (c.name != 'stage') err(c, "only stage('name') { ... } may appear in stages {}, not ${c.name}")
            else checkStage(c, hasNode, prefix)
        }
    }

    void checkStage(Node st, boolean parentHasNode, String prefix) {
        Object nameV = st.arg0()
        if (!(nameV instanceof CharSequence) || !nameV.toString()) {
            err(st, "stage needs a name: stage('Build') { ... }")
            return
        }
        String name = nameV.toString()
        String path = prefix ? prefix + '/' + name : name
        if (!stageNames.add(name)) err(st, "duplicate stage name '${name}'")
        if (st.body == null) {
            err(st, "stage '${name}' needs a { ... } block")
            return
        }
        st.children.each { Node c ->
            if (!(c.name in Rules.STAGE_SECTIONS)) err(c, "unknown section '${c.name}' in stage '${name}' (allowed: ${list(Rules.STAGE_SECTIONS)})")
        }
        dupes(st, st.children.findAll { it.name in Rules.STAGE_SECTIONS }, "stage '${name}'")
        List<Node> bodies = st.children.findAll { it.name in Rules.STAGE_BODIES }
        if (bodies.size() != 1) err(st, "stage '${name}' must have exactly one of steps, stages, parallel or matrix")
        boolean hasNode = parentHasNode
        Node agent = st.kid('agent')
        if (agent) hasNode = checkAgent(agent) || parentHasNode
        Map summary = [name: name, path: path, line: st.line, kind: bodies ? bodies[0].name : null,
                       agent: agent ? Util.plain(agent.body ? agent.children.collect { it.name } : agent.arg0()) : null,
                       when: st.kid('when') != null, input: st.kid('input') != null, steps: []]
        stages << summary
        Node when = st.kid('when')
        if (when) checkWhen(when, name)
        Node input = st.kid('input')
        if (input) checkInputDirective(input, name)
        Node opt = st.kid('options')
        if (opt) checkOptions(opt, Rules.STAGE_OPTIONS, "stage '${name}'")
        Node env = st.kid('environment')
        if (env) checkEnvironment(env)
        Node ff = st.kid('failFast')
        if (ff && st.kid('parallel') == null) err(ff, "failFast in stage '${name}' needs parallel")
        if (bodies.size() == 1) {
            Node b = bodies[0]
            if (b.name == 'steps') {
                List<Node> steps = flat(b.children)
                if (steps.isEmpty() && b.children.isEmpty()) err(b, "stage '${name}' has an empty steps {} block")
                checkSteps(b.children, hasNode, "stage '${name}'", summary.steps)
            } else if (b.name == 'stages') {
                checkStages(b, hasNode, path)
            } else if (b.name == 'parallel') {
                if (b.children.isEmpty()) err(b, "parallel in stage '${name}' holds no stage")
                b.children.each { Node c ->
                    if (c.name != 'stage' || c.kind == 'var') err(c, "only stage('name') { ... } may appear in parallel {}, not ${c.name}")
                    else checkStage(c, hasNode, path)
                }
            } else if (b.name == 'matrix') {
                Node ms = b.kid('stages')
                if (ms == null) err(b, "matrix in stage '${name}' needs stages {}")
                else checkStages(ms, hasNode, path)
            }
        }
        Node post = st.kid('post')
        if (post) checkPost(post, hasNode, "stage '${name}' post")
    }

    void checkSteps(List<Node> nodes, boolean hasNode, String where, List names) {
        nodes.each { Node n ->
            if (n.kind == 'var') {
                if (names != null) names << n.name
                checkSteps(n.children, hasNode, where, names)
                return
            }
            if (names != null) names << n.name
            if (!(n.name in Rules.STEPS)) {
                if (n.name in Rules.HELPERS) err(n, "${n.name}(...) is not a step: it is only valid as an argument (${n.name in Rules.BINDINGS ? 'a withCredentials binding' : 'of another call'})")
                else err(n, "unknown step '${n.name}' (the stub allows: ${list(Rules.STEPS + (ctx.vars.keySet() as List))})")
                return
            }
            if (!hasNode && n.name in Rules.NODE_STEPS) {
                err(n, "${n.name} in ${where} needs an agent: the pipeline has agent none and this stage none (add agent any to the stage)")
            }
            if (n.name == 'sh') checkSh(n)
            if (n.name == 'withCredentials') checkWithCredentials(n)
            if (n.name == 'input' && n.value('message') == null) err(n, 'input step needs a message')
            if (n.name in ['withCredentials', 'dir', 'script', 'timeout', 'withEnv'] && n.body == null) err(n, "${n.name} needs a { ... } block")
            checkSteps(n.children, hasNode, where, names)
        }
    }

    void checkSh(Node n) {
        Object script = n.named.containsKey('script') ? n.named.script : n.arg0()
        if (script == null) {
            err(n, 'sh needs a script')
        } else if (script instanceof GString) {
            err(n, "sh at line ${n.line} interpolates Groovy (a GString): use a single-quoted string")
        }
    }

    void checkWithCredentials(Node n) {
        Object bs = n.arg0()
        if (!(bs instanceof List)) {
            err(n, 'withCredentials needs a list of bindings: withCredentials([string(credentialsId: ..., variable: ...)]) { ... }')
            return
        }
        ((List) bs).each { Object b ->
            if (!(b instanceof Node) || !(((Node) b).name in Rules.BINDINGS)) {
                String what = b instanceof Node ? ((Node) b).name : Util.plain(b)
                err(n, "unknown withCredentials binding '${what}' (allowed: ${list(Rules.BINDINGS.keySet())})")
                return
            }
            Node bn = (Node) b
            Rules.BINDINGS[bn.name].each { String req ->
                if (bn.named[req] == null) err(bn, "withCredentials binding ${bn.name} needs ${req}:")
            }
        }
    }

    void checkPost(Node post, boolean hasNode, String where) {
        post.children.each { Node c ->
            if (!(c.name in Rules.POST_CONDITIONS)) err(c, "unknown post condition '${c.name}' (allowed: ${list(Rules.POST_CONDITIONS)})")
            else checkSteps(c.children, hasNode, where + ' ' + c.name, null)
        }
        dupes(post, post.children.findAll { it.name in Rules.POST_CONDITIONS }, where)
    }

    void checkWhen(Node w, String stage) {
        List<Node> conds = w.children.findAll { !(it.name in Rules.WHEN_FLAGS) }
        w.children.findAll { it.name in Rules.WHEN_FLAGS }.each { Node f ->
            if (!(f.arg0() instanceof Boolean)) err(f, "${f.name} takes true or false")
        }
        if (conds.isEmpty()) err(w, "when in stage '${stage}' holds no condition")
        conds.each { checkCondition(it) }
    }

    void checkCondition(Node c) {
        if (c.name in Rules.WHEN_FLAGS) {
            err(c, "${c.name} belongs directly in when {}, not inside a condition")
            return
        }
        if (!(c.name in Rules.WHEN_CONDITIONS)) {
            err(c, "unknown when condition '${c.name}' (allowed: ${list(Rules.WHEN_CONDITIONS)}, and the flags ${list(Rules.WHEN_FLAGS)})")
            return
        }
        switch (c.name) {
            case 'allOf':
            case 'anyOf':
                if (c.children.isEmpty()) err(c, "${c.name} holds no condition")
                c.children.each { checkCondition(it) }
                break
            case 'not':
                if (c.children.size() != 1) err(c, 'not holds exactly one condition')
                c.children.each { checkCondition(it) }
                break
            case 'branch':
                if (c.value('pattern') == null) err(c, "branch needs a pattern: branch 'main'")
                break
            case 'expression':
                if (c.body == null) err(c, 'expression needs a { ... } block')
                break
            case 'environment':
                if (c.named.name == null || !c.named.containsKey('value')) err(c, "environment needs name: and value:")
                break
            case 'triggeredBy':
                if (c.value('cause') == null) err(c, "triggeredBy needs a cause: triggeredBy 'TimerTrigger'")
                break
            case 'equals':
                if (!c.named.containsKey('expected') || !c.named.containsKey('actual')) err(c, 'equals needs expected: and actual:')
                break
        }
    }

    void checkInputDirective(Node i, String stage) {
        i.children.each { Node f ->
            if (!(f.name in Rules.INPUT_FIELDS)) err(f, "unknown input field '${f.name}' (allowed: ${list(Rules.INPUT_FIELDS)})")
        }
        Node msg = i.kid('message')
        if (msg == null || msg.arg0() == null) err(i, "input in stage '${stage}' needs a message")
    }

    void checkOptions(Node o, List allowed, String where) {
        o.children.each { Node c ->
            if (!(c.name in allowed)) {
                if (c.name in Rules.PIPELINE_OPTIONS) err(c, "option '${c.name}' is only allowed in the pipeline's options, not in ${where}")
                else err(c, "unknown option '${c.name}' in ${where} (allowed: ${list(allowed)})")
            }
        }
    }

    void checkEnvironment(Node e) {
        e.children.each { Node c -> err(c, "environment {} only holds NAME = value assignments, not ${c.name}(...)") }
        e.props.keySet().each { String k ->
            if (!(k ==~ /[A-Za-z_][A-Za-z0-9_]*/)) errors << "${e.file}:${e.propLines[k]}: environment variable name '${k}' is not valid".toString()
        }
    }

    // Calls consumed as arguments must be known helpers (logRotator, string, lastCompleted...).
    void checkArgs(Node n) {
        // withCredentials' bindings have their own, more precise check.
        List vals = n.name == 'withCredentials' ? new ArrayList(n.args.drop(1)) : new ArrayList(n.args)
        vals.addAll(n.named.values())
        vals.addAll(n.props.values())
        vals.each { argNodes(it).each { Node a ->
            if (!(a.name in Rules.HELPERS) && !ctx.isVar(a.name)) err(a, "unknown function '${a.name}' (used as an argument of ${n.name})")
        } }
        n.children.each { checkArgs(it) }
    }

    static List<Node> argNodes(Object v) {
        if (v instanceof Node) return [(Node) v]
        if (v instanceof Map) return ((Map) v).values().collectMany { argNodes(it) }
        if (v instanceof Collection) return ((Collection) v).collectMany { argNodes(it) }
        return []
    }
}

class Frame {
    File ws
    File cwd
    String nodeName
    Map<String, String> env = [:]
    Map stage
    String post
    List<Long> deadlines = []

    Frame child() {
        return new Frame(ws: ws, cwd: cwd, nodeName: nodeName, env: new LinkedHashMap(env), stage: stage, post: post,
            deadlines: new ArrayList(deadlines))
    }

    Long deadline() { return deadlines ? (Long) deadlines.min() : null }
}

class CurrentBuild {
    Build b

    def getResult() { return b.explicitResult }

    void setResult(Object v) {
        b.explicitResult = v?.toString()
        if (v != null) b.worsen(v.toString())
    }

    String getCurrentResult() { return b.result }

    int getNumber() { return b.number }

    String getAbsoluteUrl() { return b.baseEnv.BUILD_URL }

    def propertyMissing(String n) { return null }
}

// The delegate of steps blocks while executing: each DSL call runs the step for real.
class Runner {
    Build b
    Frame f

    def getEnv() {
        return new EnvView(reader: { String n -> b.effectiveEnv(f)[n] },
            writer: { String n, Object v -> b.globalEnv[n] = v?.toString() })
    }

    def getParams() { return b.params }

    def getCurrentBuild() { return b.currentBuild }

    def getScm() { return new Sym('scm') }

    def propertyMissing(String n) {
        if (b.ctx.topVars.containsKey(n)) return b.ctx.topVars[n]
        Map e = b.effectiveEnv(f)
        if (e.containsKey(n)) return e[n]
        throw new MissingPropertyException("No such property: ${n} for class: groovy.lang.Binding".toString())
    }

    def propertyMissing(String n, Object v) { b.ctx.topVars[n] = v }

    void println(Object o) { b.log(String.valueOf(o)) }

    void println() { b.log('') }

    void print(Object o) { b.log(String.valueOf(o)) }

    def methodMissing(String name, Object a) {
        Object[] args = a as Object[]
        Closure own = b.ctx.scriptMethod(name, args)
        if (own != null) return own.call()
        List w = b.ctx.where()
        Node c = Node.make(name, args, w)
        if (name in Rules.HELPERS) return c
        Map rec = [step: name, line: c.loc()]
        if (f.post) rec.post = f.post
        (f.stage != null ? f.stage.steps : b.pipelineSteps) << rec
        if (b.ctx.isVar(name)) {
            rec.library_var = true
            return b.ctx.callVar(name, args, this)
        }
        if (!(name in Rules.STEPS)) throw new StepFailure("No such DSL method '${name}'".toString(), 'FAILURE', c.loc())
        Long dl = f.deadline()
        if (dl != null && System.currentTimeMillis() > dl) throw new StepFailure('Timeout has been exceeded', 'ABORTED', c.loc())
        try {
            Object out = this."step_${name}"(c, rec)
            if (!rec.containsKey('status')) rec.status = 'SUCCESS'
            return out
        } catch (StepFailure e) {
            if (!rec.containsKey('status')) {
                rec.status = e.result
                rec.error = e.message
            }
            throw e
        }
    }

    Object inFrame(Frame nf, Closure body) {
        Frame old = f
        f = nf
        try {
            return Ctx.runWith(body, this)
        } finally {
            f = old
        }
    }

    void needWorkspace(Node c) {
        if (f.ws == null) {
            throw new StepFailure("Required context class hudson.FilePath is missing: ${c.name} needs an agent (a node with a workspace)".toString(), 'FAILURE', c.loc())
        }
    }

    File resolve(Object p) {
        File x = new File(p.toString())
        return x.isAbsolute() ? x : new File(f.cwd, p.toString())
    }

    Object step_echo(Node c, Map rec) {
        rec.message = String.valueOf(c.value('message'))
        b.log(rec.message)
        return null
    }

    Object step_error(Node c, Map rec) {
        throw new StepFailure(String.valueOf(c.value('message')), 'FAILURE', c.loc())
    }

    Object step_script(Node c, Map rec) { return inFrame(f, c.body) }

    Object step_dir(Node c, Map rec) {
        needWorkspace(c)
        Frame nf = f.child()
        nf.cwd = resolve(c.value('path'))
        nf.cwd.mkdirs()
        rec.path = nf.cwd.path
        return inFrame(nf, c.body)
    }

    Object step_withEnv(Node c, Map rec) {
        Frame nf = f.child()
        (c.arg0() as List).each { String kv ->
            int i = kv.indexOf('=')
            nf.env[kv.substring(0, i)] = kv.substring(i + 1)
        }
        rec.vars = (c.arg0() as List).collect { it.toString().split('=')[0] }
        return inFrame(nf, c.body)
    }

    Object step_timeout(Node c, Map rec) {
        Frame nf = f.child()
        Object time = c.named.containsKey('time') ? c.named.time : c.arg0()
        nf.deadlines << System.currentTimeMillis() + Util.millis(time, c.named.unit)
        return inFrame(nf, c.body)
    }

    Object step_deleteDir(Node c, Map rec) {
        needWorkspace(c)
        f.cwd.deleteDir()
        f.cwd.mkdirs()
        return null
    }

    Object step_checkout(Node c, Map rec) {
        needWorkspace(c)
        if (!(c.arg0() instanceof Sym && c.arg0().toString() == 'scm')) {
            throw new StepFailure('the stub only checks out scm (checkout scm)', 'FAILURE', c.loc())
        }
        return b.checkout(f.cwd, c.loc(), rec)
    }

    Object step_sh(Node c, Map rec) {
        needWorkspace(c)
        Object scriptV = c.named.containsKey('script') ? c.named.script : c.arg0()
        String script = String.valueOf(scriptV)
        boolean returnStatus = c.named.returnStatus as boolean
        boolean returnStdout = c.named.returnStdout as boolean
        if (c.named.label) rec.label = c.named.label.toString()
        rec.script = b.mask(script)
        b.checkSecrets(script, c.loc())
        b.log('[Pipeline] sh' + (c.named.label ? ' (' + c.named.label + ')' : ''))
        File dd = new File(f.ws.path + '@tmp', 'durable-' + (++b.durableCount))
        dd.mkdirs()
        File sf = new File(dd, 'script.sh')
        sf.setText(script, 'UTF-8')
        List<String> cmd
        if (script.startsWith('#!')) {
            // Jenkins' durable-task runs a script with a shebang by its interpreter.
            sf.setExecutable(true)
            cmd = [sf.absolutePath]
        } else {
            cmd = ['sh', '-xe', sf.absolutePath]
        }
        f.cwd.mkdirs()
        Map r = b.runProcess(cmd, f.cwd, b.effectiveEnv(f), f.deadline(), returnStdout)
        rec.exit = r.exit
        if (r.timedOut) throw new StepFailure('Timeout has been exceeded', 'ABORTED', c.loc())
        if (returnStatus) return r.exit
        if (r.exit != 0) throw new StepFailure("script returned exit code ${r.exit}".toString(), 'FAILURE', c.loc())
        return returnStdout ? r.out : null
    }

    Object step_stash(Node c, Map rec) {
        needWorkspace(c)
        String name = c.value('name').toString()
        List<String> files = Util.scan(f.cwd, c.named.includes, c.named.excludes,
            c.named.containsKey('useDefaultExcludes') ? (c.named.useDefaultExcludes as boolean) : true)
        rec.name = name
        rec.files = files.size()
        if (files.isEmpty() && !(c.named.allowEmpty as boolean)) {
            throw new StepFailure("No files included in stash '${name}'".toString(), 'FAILURE', c.loc())
        }
        File dir = new File(b.buildDir, 'stashes/' + name)
        dir.deleteDir()
        dir.mkdirs()
        Util.copyFiles(f.cwd, files, dir)
        b.log("Stashed ${files.size()} file(s) as ${name}")
        return null
    }

    Object step_unstash(Node c, Map rec) {
        needWorkspace(c)
        String name = c.value('name').toString()
        rec.name = name
        File dir = new File(b.buildDir, 'stashes/' + name)
        if (!dir.isDirectory()) throw new StepFailure("No such saved stash '${name}'".toString(), 'FAILURE', c.loc())
        List<String> files = Util.scan(dir, '**', null, false)
        Util.copyFiles(dir, files, f.cwd)
        rec.files = files.size()
        return null
    }

    Object step_junit(Node c, Map rec) {
        needWorkspace(c)
        Object pattern = c.value('testResults')
        boolean allowEmpty = c.named.allowEmptyResults as boolean
        List<String> files = Util.scan(f.cwd, pattern, null, true)
        rec.testResults = String.valueOf(pattern)
        if (files.isEmpty()) {
            if (allowEmpty) {
                b.log('None of the test reports contained any result')
                return null
            }
            throw new StepFailure('No test report files were found. Configuration error?', 'FAILURE', c.loc())
        }
        // Jenkins ignores reports older than the build: a stale file is no proof tests ran.
        if (files.every { new File(f.cwd, it).lastModified() < b.startMs - 3000 } && !allowEmpty) {
            throw new StepFailure('Test reports were found but none of them are new. Did tests run?', 'FAILURE', c.loc())
        }
        Map tot = [stage: f.stage?.path, files: files, tests: 0, failures: 0, errors: 0, skipped: 0]
        files.each { String rel ->
            def xml
            try {
                xml = new XmlSlurper().parse(new File(f.cwd, rel))
            } catch (Exception e) {
                throw new StepFailure("Failed to read test report file ${rel}: ${e.message}".toString(), 'FAILURE', c.loc())
            }
            String root = xml.name()
            if (!(root in ['testsuite', 'testsuites'])) {
                throw new StepFailure("Failed to read test report file ${rel}: the root element is <${root}>, not <testsuite> or <testsuites>".toString(), 'FAILURE', c.loc())
            }
            xml.'**'.findAll { it.name() == 'testcase' }.each { tc ->
                tot.tests++
                if (tc.failure.size() > 0) tot.failures++
                else if (tc.error.size() > 0) tot.errors++
                else if (tc.skipped.size() > 0) tot.skipped++
            }
        }
        b.junit << tot
        rec.tests = tot.tests
        rec.failures = tot.failures + tot.errors
        if (tot.tests == 0 && !allowEmpty) {
            throw new StepFailure('None of the test reports contained any result', 'FAILURE', c.loc())
        }
        rec.skipMarkingBuildUnstable = c.named.skipMarkingBuildUnstable as boolean
        if (tot.failures + tot.errors > 0 && rec.skipMarkingBuildUnstable) {
            b.log("${tot.failures + tot.errors} test(s) failed: recorded, the build is not marked (skipMarkingBuildUnstable)")
        } else if (tot.failures + tot.errors > 0) {
            // The JUnit plugin marks the build (and the stage) UNSTABLE, it does not fail the step.
            b.log("${tot.failures + tot.errors} test(s) failed: the build is UNSTABLE")
            b.worsen('UNSTABLE')
            if (f.stage != null) f.stage.unstable = true
            rec.status = 'UNSTABLE'
        }
        return null
    }

    Object step_archiveArtifacts(Node c, Map rec) {
        needWorkspace(c)
        Object pattern = c.value('artifacts')
        List<String> files = Util.scan(f.cwd, pattern, c.named.excludes,
            c.named.containsKey('defaultExcludes') ? (c.named.defaultExcludes as boolean) : true)
        rec.artifacts = String.valueOf(pattern)
        rec.files = files.size()
        if (files.isEmpty()) {
            if (c.named.allowEmptyArchive as boolean) {
                b.log("No artifacts found that match the file pattern \"${pattern}\"")
                return null
            }
            throw new StepFailure("No artifacts found that match the file pattern \"${pattern}\". Configuration error?".toString(), 'FAILURE', c.loc())
        }
        Util.copyFiles(f.cwd, files, new File(b.buildDir, 'archive'))
        files.each { if (!b.archived.contains(it)) b.archived << it }
        b.log("Archiving ${files.size()} artifact(s)")
        return null
    }

    Object step_copyArtifacts(Node c, Map rec) {
        needWorkspace(c)
        String project = String.valueOf(c.named.projectName)
        Object sel = c.named.selector
        String selector = sel instanceof Node ? ((Node) sel).name : 'lastSuccessful'
        String filter = c.named.filter ?: '**'
        boolean optional = c.named.optional as boolean
        rec.projectName = project
        rec.selector = selector
        Map prev = b.previousBuild(project, selector, selector == 'specific' ? String.valueOf(((Node) sel).arg0()) : null)
        if (prev == null) {
            String msg = "Unable to find a build for artifact copy from: ${project}"
            if (optional) {
                b.log(msg)
                rec.from_build = null
                return null
            }
            throw new StepFailure(msg, 'FAILURE', c.loc())
        }
        File archive = new File(b.store, "builds/${prev.build_number}/archive")
        List<String> files = Util.scan(archive, filter, c.named.excludes, false)
        rec.from_build = prev.build_number
        rec.files = files
        if (files.isEmpty()) {
            String msg = "Failed to copy artifacts from ${project} with filter: ${filter}"
            if (optional) {
                b.log(msg)
                return null
            }
            throw new StepFailure(msg, 'FAILURE', c.loc())
        }
        File target = c.named.target ? resolve(c.named.target) : f.cwd
        if (c.named.flatten as boolean) {
            files.each { String rel -> Util.copyFiles(new File(archive, rel).parentFile, [new File(rel).name], target) }
        } else {
            Util.copyFiles(archive, files, target)
        }
        b.log("Copied ${files.size()} artifact(s) from \"${project}\" build number ${prev.build_number}")
        return null
    }

    // Pipeline Utility Steps' readProperties(file: ...): the file's Java properties as a Map.
    Object step_readProperties(Node c, Map rec) {
        needWorkspace(c)
        File file = resolve(c.value('file'))
        rec.file = String.valueOf(c.value('file'))
        if (!file.isFile()) throw new StepFailure("${file} does not exist.".toString(), 'FAILURE', c.loc())
        Properties props = new Properties()
        file.withInputStream { props.load(it) }
        Map out = [:]
        props.stringPropertyNames().sort().each { String k -> out[k] = props.getProperty(k) }
        return out
    }

    Object step_fileExists(Node c, Map rec) {
        needWorkspace(c)
        Object p = c.value('file')
        boolean found = resolve(p).exists()
        rec.file = String.valueOf(p)
        rec.exists = found
        return found
    }

    Object step_input(Node c, Map rec) {
        Map spec = [message: c.value('message'), ok: c.named.ok, submitter: c.named.submitter,
                    submitterParameter: c.named.submitterParameter, id: c.named.id,
                    parameters: c.named.parameters ?: []]
        Map values = b.answerInput(spec, f, c.loc())
        rec.approver = b.approver
        if (values.isEmpty()) return null
        return values.size() == 1 ? values.values().first() : values
    }

    Object step_withCredentials(Node c, Map rec) {
        Frame nf = f.child()
        List<File> temps = []
        rec.bindings = []
        (c.arg0() as List).each { Node bn ->
            rec.bindings << [type: bn.name, credentialsId: bn.named.credentialsId]
            b.bind(bn, nf, temps, c.loc())
        }
        try {
            return inFrame(nf, c.body)
        } finally {
            temps.each { it.parentFile.deleteDir() }
        }
    }
}

// Evaluates an environment {} block at stage entry (values are Groovy expressions).
class EnvEvaluator {
    Build b
    Frame f

    def getEnv() {
        return new EnvView(reader: { String n -> b.effectiveEnv(f)[n] }, writer: { String n, Object v -> })
    }

    def getParams() { return b.params }

    def getCurrentBuild() { return b.currentBuild }

    def propertyMissing(String n) {
        if (b.ctx.topVars.containsKey(n)) return b.ctx.topVars[n]
        return b.effectiveEnv(f)[n]
    }

    def propertyMissing(String n, Object v) {
        if (v instanceof Node && ((Node) v).name == 'credentials') {
            b.bindEnvironmentCredentials(n, ((Node) v).arg0().toString(), f, ((Node) v).loc())
        } else {
            f.env[n] = v == null ? null : v.toString()
        }
    }

    def methodMissing(String name, Object a) {
        Object[] args = a as Object[]
        Closure own = b.ctx.scriptMethod(name, args)
        if (own != null) return own.call()
        return Node.make(name, args, b.ctx.where())
    }
}

class Build {
    Ctx ctx
    File wsRoot
    File source
    File store
    File buildDir
    File logFile
    int number
    long startMs = System.currentTimeMillis()
    Map<String, String> baseEnv = [:]
    Map<String, String> globalEnv = [:]
    Map cause
    Map creds = [:]
    List<List> secrets = []
    String answer = 'approve'
    String approver = 'stub-approver'
    String result = 'SUCCESS'
    String explicitResult
    Map pipelineOptions = [:]
    Map params = [:]
    Map<String, String> givenParams = [:]  // --param K=V: what Build with Parameters was given
    CurrentBuild currentBuild
    List stages = []
    List pipelineSteps = []
    List errors = []
    List junit = []
    List archived = []
    List triggers = []
    List inputs = []
    List postRecs = []
    int wsCount = 0
    int agentCount = 0
    int durableCount = 0
    Writer logw

    void worsen(String r) { result = Rules.worse(result, r) }

    void log(String line) {
        String m = mask(line)
        logw.write(m + '\n')
        logw.flush()
        System.err.println(m)
    }

    String mask(String s) {
        String out = s
        secrets.each { List sec -> out = out.replace((String) sec[1], '****') }
        return out
    }

    // Groovy must never put a secret into a shell script's text (it would sit on disk and in
    // the process table): fail the build the moment it happens.
    void checkSecrets(String script, String where) {
        secrets.each { List sec ->
            if (script.contains((String) sec[1])) {
                throw new StepFailure("secret ${sec[0]} appears in the sh script at ${where}".toString(), 'FAILURE', where)
            }
        }
    }

    Map<String, String> effectiveEnv(Frame f) {
        Map<String, String> m = new LinkedHashMap(baseEnv)
        m.putAll(globalEnv)
        if (f != null) m.putAll(f.env)
        return m.findAll { k, v -> v != null }
    }

    Map runProcess(List<String> cmd, File dir, Map<String, String> env, Long deadline, boolean capture) {
        ProcessBuilder pb = new ProcessBuilder(cmd as String[]).directory(dir)
        pb.environment().clear()
        pb.environment().putAll(env)
        if (!capture) pb.redirectErrorStream(true)
        Process p = pb.start()
        p.outputStream.close()
        StringBuffer out = new StringBuffer()
        Thread t1 = Thread.start {
            if (capture) out.append(p.inputStream.getText('UTF-8'))
            else p.inputStream.eachLine('UTF-8') { String l -> log(l) }
        }
        Thread t2 = capture ? Thread.start { p.errorStream.eachLine('UTF-8') { String l -> log(l) } } : null
        boolean timedOut = false
        if (deadline == null) {
            p.waitFor()
        } else if (!p.waitFor(Math.max(1L, deadline - System.currentTimeMillis()), TimeUnit.MILLISECONDS)) {
            timedOut = true
            p.toHandle().descendants().toArray().each { it.destroyForcibly() }
            p.destroyForcibly()
            p.waitFor()
        }
        // A background child may hold the pipe open: Jenkins returns when the script exits.
        t1.join(5000)
        t2?.join(5000)
        return [exit: p.exitValue(), out: out.toString(), timedOut: timedOut]
    }

    Map checkout(File dir, String where, Map rec) {
        dir.mkdirs()
        Map<String, String> env = effectiveEnv(null)
        List<List<String>> cmds = []
        if (!new File(dir, '.git').exists()) {
            cmds << ['git', 'init', '-q', dir.path]
            cmds << ['git', '-C', dir.path, 'remote', 'add', 'origin', source.absolutePath]
        }
        cmds << ['git', '-C', dir.path, 'fetch', '-q', '--no-tags', 'origin', 'HEAD']
        cmds << ['git', '-C', dir.path, 'checkout', '-q', '-f', 'FETCH_HEAD']
        for (List<String> cmd : cmds) {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start()
            String o = p.inputStream.getText('UTF-8')
            if (p.waitFor() != 0) throw new StepFailure("checkout scm failed: ${cmd.join(' ')}: ${o.trim()}".toString(), 'FAILURE', where)
        }
        Process h = new ProcessBuilder(['git', '-C', dir.path, 'rev-parse', 'HEAD']).start()
        String sha = h.inputStream.getText('UTF-8').trim()
        h.waitFor()
        rec.commit = sha
        log("Checking out Revision ${sha}")
        return [GIT_COMMIT: sha, GIT_URL: source.absolutePath, GIT_BRANCH: 'origin/' + (baseEnv.BRANCH_NAME ?: 'HEAD')]
    }

    // A stage agent: a fresh, empty workspace, as if on another machine.
    void allocate(Frame f, String label, Map stageRec, boolean skipCheckout) {
        wsCount++
        agentCount++
        File ws = new File(wsRoot, "${number}/${wsCount}-${Util.slug(label)}")
        ws.mkdirs()
        new File(ws.path + '@tmp').mkdirs()
        f.ws = ws
        f.cwd = ws
        f.nodeName = "stub-agent-${agentCount}"
        f.env.WORKSPACE = ws.absolutePath
        f.env.WORKSPACE_TMP = ws.absolutePath + '@tmp'
        f.env.NODE_NAME = f.nodeName
        if (stageRec != null) {
            stageRec.workspace = ws.absolutePath
            stageRec.node = f.nodeName
        }
        if (!skipCheckout) {
            // Declarative's implicit "Checkout SCM" on every agent, unless skipDefaultCheckout.
            Map rec = [step: 'checkout', implicit: true, line: null]
            (stageRec != null ? stageRec.steps : pipelineSteps) << rec
            checkout(ws, ctx.mainDisplay, rec)
            rec.status = 'SUCCESS'
        }
    }

    Map secretEntry(String id, String where) {
        if (!creds.containsKey(id)) throw new StepFailure("Could not find credentials entry with ID '${id}'".toString(), 'FAILURE', where)
        Object v = creds[id]
        return v instanceof Map ? (Map) v : [secret: v.toString()]
    }

    static String typeOf(Map e) {
        if (e.containsKey('privateKey')) return 'SSH Username with private key'
        if (e.containsKey('password')) return 'Username with password'
        return 'Secret text'
    }

    static void expect(String id, Map e, List types, String want, String where) {
        if (!(typeOf(e) in types)) {
            throw new StepFailure("Credentials '${id}' is of type '${typeOf(e)}' where '${want}' was expected".toString(), 'FAILURE', where)
        }
    }

    File secretFile(Frame f, String id, String content, List<File> temps, String where) {
        if (f.ws == null) throw new StepFailure('Required context class hudson.FilePath is missing: a file binding needs an agent', 'FAILURE', where)
        File d = new File(f.ws.path + '@tmp', 'secretFiles/' + UUID.randomUUID())
        d.mkdirs()
        File x = new File(d, id)
        x.setText(content, 'UTF-8')
        temps << x
        return x
    }

    void bind(Node bn, Frame f, List<File> temps, String where) {
        String id = bn.named.credentialsId.toString()
        Map e = secretEntry(id, where)
        switch (bn.name) {
            case 'string':
                expect(id, e, ['Secret text'], 'Secret text', where)
                f.env[bn.named.variable.toString()] = e.secret
                break
            case 'file':
                expect(id, e, ['Secret text'], 'Secret file', where)
                f.env[bn.named.variable.toString()] = secretFile(f, id, e.secret, temps, where).absolutePath
                break
            case 'usernamePassword':
                expect(id, e, ['Username with password'], 'Username with password', where)
                f.env[bn.named.usernameVariable.toString()] = e.username
                f.env[bn.named.passwordVariable.toString()] = e.password
                break
            case 'usernameColonPassword':
                expect(id, e, ['Username with password'], 'Username with password', where)
                f.env[bn.named.variable.toString()] = e.username + ':' + e.password
                break
            case 'sshUserPrivateKey':
                String key = e.privateKey ?: e.secret
                f.env[bn.named.keyFileVariable.toString()] = secretFile(f, id, key, temps, where).absolutePath
                if (bn.named.usernameVariable) f.env[bn.named.usernameVariable.toString()] = e.username
                if (bn.named.passphraseVariable) f.env[bn.named.passphraseVariable.toString()] = e.passphrase
                break
        }
    }

    void bindEnvironmentCredentials(String var, String id, Frame f, String where) {
        Map e = secretEntry(id, where)
        if (typeOf(e) == 'Username with password') {
            f.env[var] = e.username + ':' + e.password
            f.env[var + '_USR'] = e.username
            f.env[var + '_PSW'] = e.password
        } else {
            f.env[var] = e.secret ?: e.privateKey
        }
    }

    Map answerInput(Map spec, Frame f, String where) {
        Map rec = [stage: f.stage?.path, message: Util.plain(spec.message), ok: Util.plain(spec.ok),
                   submitter: Util.plain(spec.submitter), id: Util.plain(spec.id), answer: answer,
                   approver: approver, line: where]
        inputs << rec
        log("[Pipeline] input\n${spec.message}\n${spec.ok ?: 'Proceed'} or Abort")
        if (answer == 'abort') {
            log("Rejected by ${approver}")
            throw new StepFailure("Rejected by ${approver}".toString(), 'ABORTED', where)
        }
        log("Approved by ${approver}")
        Map values = [:]
        (spec.parameters as List).each { Object p ->
            if (p instanceof Node) {
                Node pn = (Node) p
                Object d = pn.named.defaultValue
                if (d == null && pn.name == 'booleanParam') d = false
                if (d == null && pn.name == 'choice') d = choices(pn.named.choices)[0]
                values[pn.named.name.toString()] = d
            }
        }
        if (spec.submitterParameter) values[spec.submitterParameter.toString()] = approver
        return values
    }

    static List choices(Object c) {
        if (c instanceof List) return (List) c
        return c == null ? [null] : c.toString().readLines()
    }

    Map previousBuild(String job, String selector, String wanted = null) {
        File builds = new File(store, 'builds')
        List<Map> done = []
        builds.listFiles()?.each { File d ->
            File r = new File(d, 'result.json')
            if (d.name ==~ /\d+/ && (d.name as int) != number && r.isFile()) done << (Map) new JsonSlurper().parse(r)
        }
        List<Map> cands = done.findAll { job == null || it.job_name == job }
        if (selector == 'lastSuccessful') cands = cands.findAll { it.result in ['SUCCESS', 'UNSTABLE'] }
        // specific(N): that build of the job, if it completed and was kept.
        if (selector == 'specific') cands = cands.findAll { String.valueOf(it.build_number) == wanted }
        return cands ? cands.max { it.build_number as int } : null
    }

    boolean isNone(Node a) { return Validator.isNone(a) }

    boolean skipCheckout(Node options) {
        Node s = options?.kid('skipDefaultCheckout')
        if (s != null) return s.arg0() == null || (s.arg0() as boolean)
        Node p = pipelineOptions.skipDefaultCheckout
        return p != null && (p.arg0() == null || (p.arg0() as boolean))
    }

    // Re-records a section with the live environment of f.
    List<Node> recordLive(Closure body, Frame f) {
        Recorder r = new Recorder(ctx, { String n -> effectiveEnv(f)[n] }, params, currentBuild)
        Ctx.runWith(body, r)
        r.done = true
        return r.root.children
    }

    // A Groovy error in a steps block fails the build, as in Jenkins (it is no crash of the stub).
    Object evaluate(Closure body, Frame f) {
        Runner r = new Runner(b: this, f: f)
        try {
            return Ctx.runWith(body, r)
        } catch (StepFailure e) {
            throw e
        } catch (Exception e) {
            throw new StepFailure(e.toString(), 'FAILURE', ctx.locate(e))
        }
    }

    void applyEnvironment(Node e, Frame f) {
        Ctx.runWith(e.body, new EnvEvaluator(b: this, f: f))
    }

    boolean compare(Object pattern, String actual, Object comparator) {
        if (actual == null) return false
        String p = pattern.toString()
        switch ((comparator ?: 'GLOB').toString()) {
            case 'EQUALS': return p == actual
            case 'REGEXP': return actual ==~ p
            default: return Util.antMatch(p, actual, false)
        }
    }

    boolean condition(Node c, Frame f) {
        Map<String, String> e = effectiveEnv(f)
        switch (c.name) {
            case 'allOf': return c.children.every { condition(it, f) }
            case 'anyOf': return c.children.any { condition(it, f) }
            case 'not': return !condition(c.children[0], f)
            case 'branch': return compare(c.value('pattern'), e.BRANCH_NAME, c.named.comparator)
            case 'buildingTag': return e.TAG_NAME != null
            case 'tag':
                Object p = c.value('pattern')
                return e.TAG_NAME != null && (p == null || compare(p, e.TAG_NAME, c.named.comparator))
            case 'changeRequest':
                if (e.CHANGE_ID == null) return false
                Map fields = [id: 'CHANGE_ID', target: 'CHANGE_TARGET', branch: 'CHANGE_BRANCH', fork: 'CHANGE_FORK',
                              url: 'CHANGE_URL', title: 'CHANGE_TITLE', author: 'CHANGE_AUTHOR',
                              authorDisplayName: 'CHANGE_AUTHOR_DISPLAY_NAME', authorEmail: 'CHANGE_AUTHOR_EMAIL']
                return c.named.findAll { k, v -> k != 'comparator' }.every { k, v ->
                    fields.containsKey(k) && compare(v, e[fields[k]], c.named.comparator)
                }
            case 'environment': return e[c.named.name.toString()] == c.named.value?.toString()
            case 'equals': return c.named.expected == c.named.actual
            case 'expression':
                Object v = evaluate(c.body, f)
                return v ? true : false
            case 'triggeredBy':
                String want = c.value('cause').toString()
                Object detail = c.named.detail
                return cause.className.contains(want) && (detail == null || detail.toString() == cause.detail)
        }
        throw new StepFailure("unknown when condition '${c.name}'".toString(), 'FAILURE', c.loc())
    }

    boolean evalWhen(Node when, Frame f) {
        return recordLive(when.body, f).findAll { !(it.name in Rules.WHEN_FLAGS) }.every { condition(it, f) }
    }

    static boolean flag(Node when, String name) {
        Node x = when?.kid(name)
        return x != null && (x.arg0() as boolean)
    }

    String skipStage(Map rec, List<Node> subs, String reason) {
        rec.status = 'SKIPPED'
        rec.skipped_by = reason
        log("Stage \"${rec.path}\" skipped due to ${reason == 'when' ? 'when conditional' : 'earlier ' + reason}")
        subs.each { runStage(it, null, rec.path, reason) }
        return 'SKIPPED'
    }

    static List<Node> subStages(Node s) {
        Node b = s.kid('stages') ?: s.kid('parallel')
        return b ? b.kids('stage') : []
    }

    String runSequence(List<Node> list, Frame parent, String prefix) {
        String worst = 'SUCCESS'
        String skip = null
        list.each { Node s ->
            String st = runStage(s, parent, prefix, skip)
            if (skip == null && st in ['FAILURE', 'ABORTED']) skip = st == 'ABORTED' ? 'aborted' : 'failure'
            if (skip == null && st == 'UNSTABLE' && pipelineOptions.skipStagesAfterUnstable != null) skip = 'unstable'
            if (st != 'SKIPPED') worst = Rules.worse(worst, st)
        }
        return worst
    }

    String runParallel(Node s, List<Node> branches, Frame f, String path) {
        boolean failFast = flag(s, 'failFast') || pipelineOptions.parallelsAlwaysFailFast != null
        String worst = 'SUCCESS'
        boolean failed = false
        branches.each { Node br ->
            // Branches run one after the other, each in its own frame (and workspace, with an agent).
            String st = (failFast && failed) ? runStage(br, f, path, 'failFast') : runStage(br, f, path, null)
            if (st in ['FAILURE', 'ABORTED']) failed = true
            if (st != 'SKIPPED') worst = Rules.worse(worst, st)
        }
        return worst
    }

    String runStage(Node s, Frame parent, String prefix, String skip) {
        String name = s.arg0().toString()
        String path = prefix ? prefix + '/' + name : name
        Map rec = [name: name, path: path, status: null, skipped_by: null, line: s.loc(), workspace: null,
                   node: null, steps: [], post: []]
        stages << rec
        List<Node> subs = subStages(s)
        if (skip != null) return skipStage(rec, subs, skip)
        log("[Pipeline] { (${path})")
        Frame f = parent.child()
        f.stage = rec
        f.post = null
        f.env.STAGE_NAME = name
        String status = 'SUCCESS'
        Node when = s.kid('when')
        boolean whenDone = when == null
        try {
            if (!whenDone && flag(when, 'beforeOptions')) {
                whenDone = true
                if (!evalWhen(when, f)) return skipStage(rec, subs, 'when')
            }
            Node opts = s.kid('options')
            int attempts = 1
            opts?.children?.each { Node o ->
                if (o.name == 'timeout') f.deadlines << System.currentTimeMillis() + Util.millis(o.value('time'), o.named.unit)
                if (o.name == 'retry') attempts = (o.value('count') ?: 1) as int
            }
            if (!whenDone && flag(when, 'beforeInput')) {
                whenDone = true
                if (!evalWhen(when, f)) return skipStage(rec, subs, 'when')
            }
            Node inp = s.kid('input')
            if (inp != null) {
                List<Node> fields = recordLive(inp.body, f)
                Map spec = [parameters: []]
                fields.each { Node x ->
                    if (x.name == 'parameters') spec.parameters = x.children
                    else spec[x.name] = x.arg0()
                }
                f.env.putAll(answerInput(spec, f, inp.loc()).collectEntries { k, v -> [k, v?.toString()] })
            }
            if (!whenDone && flag(when, 'beforeAgent')) {
                whenDone = true
                if (!evalWhen(when, f)) return skipStage(rec, subs, 'when')
            }
            Node ag = s.kid('agent')
            if (ag != null && !isNone(ag)) allocate(f, path, rec, skipCheckout(opts))
            Node envN = s.kid('environment')
            if (envN != null) applyEnvironment(envN, f)
            if (!whenDone && !evalWhen(when, f)) return skipStage(rec, subs, 'when')
            Node steps = s.kid('steps')
            if (steps != null) {
                for (int i = 1; i <= attempts; i++) {
                    try {
                        evaluate(steps.body, f)
                        break
                    } catch (StepFailure e) {
                        if (i == attempts || e.result == 'ABORTED') throw e
                        log("ERROR: ${e.message}\nRetrying")
                    }
                }
            } else if (s.kid('stages') != null) {
                status = runSequence(subs, f, path)
            } else if (s.kid('parallel') != null) {
                status = runParallel(s, subs, f, path)
            } else {
                throw new StepFailure('matrix is not supported by the stub', 'FAILURE', s.loc())
            }
        } catch (StepFailure e) {
            status = e.result
            fail(path, e)
        }
        if (rec.unstable) status = Rules.worse(status, 'UNSTABLE')
        Node post = s.kid('post')
        if (post != null) {
            rec.status = status
            String after = runPost(post, status, f, rec)
            status = Rules.worse(status, after)
            if (rec.unstable) status = Rules.worse(status, 'UNSTABLE')
        }
        rec.status = status
        rec.remove('unstable')
        worsen(status)
        log("[Pipeline] } (${path}: ${status})")
        return status
    }

    void fail(String where, StepFailure e) {
        String msg = "${e.where}: ${where}: ${e.message}".toString()
        errors << msg
        log('ERROR: ' + e.message)
    }

    Map previous

    boolean postMet(String cond, String status) {
        String prev = previous?.result
        switch (cond) {
            case 'always': return true
            case 'cleanup': return true
            case 'changed': return prev == null || prev != status
            case 'fixed': return prev in ['FAILURE', 'UNSTABLE'] && status == 'SUCCESS'
            case 'regression': return prev == 'SUCCESS' && status in ['FAILURE', 'UNSTABLE', 'ABORTED']
            case 'aborted': return status == 'ABORTED'
            case 'failure': return status == 'FAILURE'
            case 'success': return status == 'SUCCESS'
            case 'unstable': return status == 'UNSTABLE'
            case 'unsuccessful': return status != 'SUCCESS'
        }
        return false
    }

    // Returns the worst result its blocks caused (SUCCESS when none failed).
    String runPost(Node post, String status, Frame f, Map stageRec) {
        String out = 'SUCCESS'
        Rules.POST_CONDITIONS.each { String cond ->
            Node block = post.kid(cond)
            if (block == null || !postMet(cond, status)) return
            Frame pf = f.child()
            pf.post = cond
            Map prec = [condition: cond, stage: stageRec?.path, status: 'SUCCESS']
            (stageRec != null ? stageRec.post : postRecs) << prec
            try {
                evaluate(block.body, pf)
            } catch (StepFailure e) {
                prec.status = e.result
                out = Rules.worse(out, e.result)
                fail(stageRec != null ? stageRec.path + ' post ' + cond : 'post ' + cond, e)
            }
        }
        return out
    }

    Map run(Node p) {
        Frame root = new Frame()
        p.kid('options')?.children?.each { Node o -> pipelineOptions[o.name] = o }
        p.kid('parameters')?.children?.each { Node x ->
            Object d = x.named.defaultValue
            if (d == null && x.name == 'booleanParam') d = false
            if (d == null && x.name == 'choice') d = choices(x.named.choices)[0]
            params[x.named.name.toString()] = d
        }
        givenParams.each { String k, String v ->
            if (!params.containsKey(k)) throw new UsageError("--param ${k}: the pipeline has no such parameter".toString())
            params[k] = params[k] instanceof Boolean ? v == 'true' : v
        }
        p.kid('triggers')?.children?.each { Node t ->
            triggers << [trigger: t.name, spec: Util.plain(t.value('spec')), line: t.loc()]
        }
        try {
            Node timeout = pipelineOptions.timeout
            if (timeout != null) root.deadlines << startMs + Util.millis(timeout.value('time'), timeout.named.unit)
            Node envN = p.kid('environment')
            if (envN != null) applyEnvironment(envN, root)
            Node ag = p.kid('agent')
            if (!isNone(ag)) allocate(root, 'pipeline', null, skipCheckout(null))
            runSequence(p.kid('stages').kids('stage'), root, '')
        } catch (StepFailure e) {
            worsen(e.result)
            fail('pipeline', e)
        }
        Node post = p.kid('post')
        if (post != null) worsen(runPost(post, result, root, null))
        return report()
    }

    Map report() {
        return [result: result, build_number: number, job_name: baseEnv.JOB_NAME, build_url: baseEnv.BUILD_URL,
                cause: cause.name, stages: stages, pipeline_steps: pipelineSteps, post: postRecs, junit: junit,
                archived: archived, triggers: triggers, inputs: inputs, errors: errors, log: logFile.absolutePath]
    }
}

// ---- command line -------------------------------------------------------------------------

PrintStream jsonOut = System.out
// Whatever a Jenkinsfile prints must not corrupt the JSON on stdout.
System.setOut(System.err)

Map<String, File> libraries(List<String> specs) {
    Map<String, File> out = [:]
    specs.each { String s ->
        int i = s.indexOf('=')
        if (i < 1) throw new UsageError("--library takes NAME=DIR, not ${s}")
        File d = new File(s.substring(i + 1))
        if (!d.isDirectory()) throw new UsageError("--library ${s}: ${d} is no directory")
        out[s.substring(0, i)] = d
    }
    return out
}

// Compiles and records one Jenkinsfile; returns [ctx, root node or null, validator].
List load(File f, Map<String, File> libs, String mode, Closure envRead, Object params, Object currentBuild) {
    Ctx ctx = new Ctx(mode, libs)
    DelegatingScript s = ctx.compileMain(f)
    if (s == null || ctx.syntaxErrors) return [ctx, null, null]
    Recorder r = new Recorder(ctx, envRead, params, currentBuild)
    s.setDelegate(r)
    Validator v = new Validator(ctx)
    try {
        s.run()
    } catch (Exception e) {
        // Groovy code around the DSL failed while the pipeline was being read.
        v.errors << "${ctx.locate(e)}: reading the pipeline failed: ${e}".toString()
        return [ctx, r.root, v]
    }
    r.done = true
    if (ctx.syntaxErrors) return [ctx, null, null]
    v.run(r.root)
    v.errors.addAll(0, ctx.loadErrors)
    return [ctx, r.root, v]
}

int validateMain(List<String> argv, PrintStream out) {
    List<String> libSpecs = []
    List<File> files = []
    for (int i = 0; i < argv.size(); i++) {
        if (argv[i] == '--library') libSpecs << argv[++i]
        else files << new File(argv[i])
    }
    if (!files) throw new UsageError('validate needs at least one file')
    Map<String, File> libs = libraries(libSpecs)
    int code = 0
    files.each { File f ->
        Map res = [file: f.path, ok: false, syntax_error: null, errors: [], stages: [], tree: null]
        if (!f.isFile()) {
            res.errors = ["${f.path}: no such file".toString()]
            code = Math.max(code, 1)
        } else {
            List l = load(f, libs, 'validate', null, null, null)
            Ctx ctx = l[0]
            if (ctx.syntaxErrors) {
                res.syntax_error = ctx.syntaxErrors[0]
                res.errors = ctx.syntaxErrors
                code = 2
            } else {
                Validator v = l[2]
                res.errors = v.errors
                res.stages = v.stages
                res.tree = Util.tree((Node) l[1])
                res.ok = v.errors.isEmpty()
                if (!res.ok) code = Math.max(code, 1)
            }
        }
        out.println(JsonOutput.toJson(Util.plain(res)))
    }
    return code
}

int executeMain(List<String> argv, PrintStream out) {
    if (!argv) throw new UsageError('execute needs a Jenkinsfile')
    File jf = new File(argv[0])
    Map opt = [env: [], library: [], param: []]
    for (int i = 1; i < argv.size(); i++) {
        String k = argv[i]
        if (!k.startsWith('--') || i + 1 >= argv.size()) throw new UsageError("unexpected argument ${k}")
        String v = argv[++i]
        String key = k.substring(2)
        if (key in ['env', 'library', 'param']) opt[key] << v
        else if (key in ['workspace-root', 'source', 'store', 'cause', 'credentials', 'answer', 'approver']) opt[key] = v
        else throw new UsageError("unknown option ${k}")
    }
    ['workspace-root', 'source', 'store'].each { if (!opt[it]) throw new UsageError("execute needs --${it}") }
    if (!jf.isFile()) throw new UsageError("${jf}: no such file")
    String answer = opt.answer ?: 'approve'
    if (!(answer in ['approve', 'abort'])) throw new UsageError("--answer is approve or abort, not ${answer}")
    String causeSpec = opt.cause ?: 'BranchEventCause'
    String causeName = causeSpec.split(':')[0]
    if (!Rules.CAUSES.containsKey(causeName)) throw new UsageError("--cause is one of ${Rules.CAUSES.keySet().join(', ')}, not ${causeName}")

    Build b = new Build(answer: answer)
    if (opt.approver) b.approver = opt.approver
    b.cause = [name: causeName, className: Rules.CAUSES[causeName],
               detail: causeSpec.contains(':') ? causeSpec.substring(causeSpec.indexOf(':') + 1) : 'stub-user']
    b.wsRoot = new File(opt['workspace-root']).absoluteFile
    b.source = new File(opt.source).absoluteFile
    b.store = new File(opt.store).absoluteFile
    if (opt.credentials) b.creds = (Map) new JsonSlurper().parse(new File(opt.credentials))
    b.creds.each { id, v ->
        if (v instanceof Map) {
            ['password', 'privateKey', 'passphrase', 'secret'].each { if (v[it]) b.secrets << [id, v[it].toString()] }
        } else if (v != null && v.toString()) {
            b.secrets << [id, v.toString()]
        }
    }
    File builds = new File(b.store, 'builds')
    builds.mkdirs()
    List<Integer> nums = builds.listFiles().findAll { it.name ==~ /\d+/ }.collect { it.name as int }
    b.number = (nums ? nums.max() : 0) + 1
    b.buildDir = new File(builds, b.number.toString())
    b.buildDir.mkdirs()
    b.logFile = new File(b.buildDir, 'log.txt')
    b.logw = b.logFile.newWriter('UTF-8')
    b.currentBuild = new CurrentBuild(b: b)

    opt.param.each { String kv ->
        int i = kv.indexOf('=')
        if (i < 1) throw new UsageError("--param takes K=V, not ${kv}")
        b.givenParams[kv.substring(0, i)] = kv.substring(i + 1)
    }
    Map<String, String> given = [:]
    opt.env.each { String kv ->
        int i = kv.indexOf('=')
        if (i < 1) throw new UsageError("--env takes K=V, not ${kv}")
        given[kv.substring(0, i)] = kv.substring(i + 1)
    }
    Map<String, String> e = [:]
    ['PATH', 'HOME'].each { if (System.getenv(it) != null) e[it] = System.getenv(it) }
    String jenkinsUrl = given.JENKINS_URL ?: 'http://jenkins.stub/'
    String job = given.JOB_NAME ?: 'mlci-stub'
    e.JENKINS_URL = jenkinsUrl
    e.JOB_NAME = job
    e.JOB_BASE_NAME = job.tokenize('/')[-1]
    e.BUILD_NUMBER = b.number.toString()
    e.BUILD_ID = b.number.toString()
    e.BUILD_TAG = "jenkins-${job.replace('/', '-')}-${b.number}".toString()
    e.EXECUTOR_NUMBER = '0'
    e.JOB_URL = jenkinsUrl + job.tokenize('/').collect { 'job/' + it }.join('/') + '/'
    e.BUILD_URL = e.JOB_URL + b.number + '/'
    e.putAll(given)
    b.baseEnv = e

    List l = load(jf, libraries(opt.library), 'execute', { String n -> b.effectiveEnv(null)[n] }, b.params, b.currentBuild)
    Ctx ctx = l[0]
    if (ctx.syntaxErrors || ((Validator) l[2]).errors) {
        List errs = ctx.syntaxErrors ?: ((Validator) l[2]).errors
        b.buildDir.deleteDir()
        out.println(JsonOutput.toJson([result: null, errors: errs]))
        return ctx.syntaxErrors ? 2 : 1
    }
    ctx.build = b
    b.ctx = ctx
    ctx.scripts.each { ((DelegatingScript) it).setDelegate(new Strict()) }
    b.previous = b.previousBuild(job, 'lastCompleted')
    Node pipeline = Validator.flat(((Node) l[1]).children).find { it.name == 'pipeline' }
    Map report = b.run(pipeline)
    b.logw.close()
    String json = JsonOutput.toJson(Util.plain(report))
    new File(b.buildDir, 'result.json').setText(JsonOutput.prettyPrint(json), 'UTF-8')
    out.println(json)
    return 0
}

int code
try {
    List<String> argv = args as List
    if (!argv || !(argv[0] in ['validate', 'execute'])) throw new UsageError('usage: declarative.groovy validate|execute ...')
    code = argv[0] == 'validate' ? validateMain(argv.drop(1), jsonOut) : executeMain(argv.drop(1), jsonOut)
} catch (UsageError e) {
    System.err.println('declarative.groovy: ' + e.message)
    code = 3
} catch (Throwable t) {
    System.err.println('declarative.groovy: the stub crashed: ' + t)
    t.printStackTrace(System.err)
    code = 3
}
jsonOut.flush()
System.exit(code)
